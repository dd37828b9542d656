#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>

#include "agent/events/event_parse.h"
#include "agent/events/journal.h"
#include "agent/events/patch.h"
#include "agent/mapping/mapping.h"

using namespace dingbridge;
using namespace dingbridge::agent;
using namespace dingbridge::agent::events;

BOOST_AUTO_TEST_SUITE(events)

BOOST_AUTO_TEST_CASE(stream_frame_and_camel_case_payload) {
    std::string error;
    auto f = parse_stream_frame(
        R"({"specVersion":"1.0","type":"EVENT","headers":{"messageId":"m1","eventId":"e1","eventType":"user_add_org",)"
        R"("eventBornTime":"1690000000000","topic":"*"},"data":"{\"userId\":[\"u1\",\"u2\"],\"eventId\":\"e1\"}"})",
        error);
    BOOST_TEST_REQUIRE(f.has_value(), error);
    BOOST_TEST(f->type == "EVENT");
    BOOST_TEST(f->message_id == "m1");
    BOOST_TEST(f->born_ms == 1690000000000);
    JournalEvent e;
    e.event_type = f->event_type;
    BOOST_TEST_REQUIRE(parse_event_payload(f->data, e, error), error);
    BOOST_TEST(e.user_ids == (std::vector<std::string>{"u1", "u2"}));
    BOOST_TEST(e.dedup_key == "event:e1");
    BOOST_TEST(event_object_kind(e.event_type) == "user");
}

BOOST_AUTO_TEST_CASE(push_payload_pascal_case_and_bad_input) {
    std::string error;
    JournalEvent e;
    BOOST_TEST(parse_event_payload(
        R"({"EventType":"org_dept_remove","DeptId":[581208264],"TimeStamp":"1640669222083"})", e, error));
    BOOST_TEST(e.dept_ids == (std::vector<std::string>{"581208264"}));
    BOOST_TEST(e.born_ms == 1640669222083);
    BOOST_TEST(event_object_kind(e.event_type) == "department");
    JournalEvent bad;
    BOOST_TEST(!parse_event_payload("not json", bad, error));
    JournalEvent wrong;
    BOOST_TEST(!parse_event_payload(R"({"EventType":"user_add_org","UserId":[{"x":1}]})", wrong, error));
    JournalEvent quote;
    BOOST_TEST(!parse_event_payload(R"({"EventType":"user_add_org","UserId":["a\"b"]})", quote, error));
    BOOST_TEST(!parse_stream_frame(R"({"type":"EVENT","headers":{}})", error).has_value());
    BOOST_TEST(!parse_stream_frame("[1,2]", error).has_value());
}

BOOST_AUTO_TEST_CASE(ack_frame_is_json_with_data_as_string) {
    std::string a = stream_ack("id\"1", 200, R"({"status":"SUCCESS"})");
    BOOST_TEST(a == R"({"code":200,"headers":{"contentType":"application/json","messageId":"id\"1"},"message":"OK",)"
                    R"("data":"{\"status\":\"SUCCESS\"}"})");
}

BOOST_AUTO_TEST_CASE(journal_deduplicates_and_counts_calls) {
    auto path = std::filesystem::temp_directory_path() / ("dingbridge-journal-" + std::to_string(getpid()) + ".db");
    std::filesystem::remove(path);
    {
        Journal j(path.string());
        JournalEvent e;
        e.dedup_key = "event:1";
        e.source = "stream";
        e.event_type = "user_add_org";
        e.user_ids = {"u1"};
        std::string error;
        BOOST_TEST((j.record(e, error) == RecordResult::inserted));
        BOOST_TEST((j.record(e, error) == RecordResult::duplicate));
        auto rows = j.pending(10);
        BOOST_TEST_REQUIRE(rows.size() == 1u);
        BOOST_TEST(rows[0].user_ids == e.user_ids);
        BOOST_TEST(j.mark_done({rows[0].id}, 7));
        BOOST_TEST(j.pending(10).empty());
        BOOST_TEST((j.record(e, error) == RecordResult::duplicate));  // a redelivery after apply
        j.add_calls(3, "event");
        j.add_calls(2, "full");
        BOOST_TEST(j.calls_in_month(Journal::this_month()) == 5);
        BOOST_TEST(j.calls_in_month(Journal::this_month(), "full") == 2);
    }
    std::filesystem::remove(path);
}

namespace {

OrgSnapshot small_org() {
    OrgSnapshot s;
    s.departments["1"] = OrgDepartment{"1", "Root", "", 0, {}, "", {}};
    s.departments["2"] = OrgDepartment{"2", "A", "1", 0, {"boss"}, "", {}};
    s.departments["3"] = OrgDepartment{"3", "B", "2", 0, {}, "", {}};
    OrgUser boss;
    boss.external_id = "boss";
    boss.departments = {{"2", 0, true}};
    boss.primary_department = "2";
    OrgUser u;
    u.external_id = "u1";
    u.departments = {{"3", 0, false}};
    u.primary_department = "3";
    u.manager = "boss";
    s.users["boss"] = boss;
    s.users["u1"] = u;
    return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(patch_replaces_only_fetched_objects) {
    Mapping m = Mapping::load_string("{}");
    OrgSnapshot cur = small_org();
    EventFetch f;
    dingtalk::DeptDetail d;
    d.dept_id = 3;
    d.name = "B renamed";
    d.parent_id = 1;  // moved under the root: u1 loses the manager found via department 2
    f.departments[3] = d;
    auto r = patch_desired(cur, f, m, 1);
    BOOST_TEST(r.desired.departments.at("3").name == "B renamed");
    BOOST_TEST(r.desired.departments.at("3").parent_external_id == "1");
    BOOST_TEST(r.desired.users.at("u1").manager == "");
    BOOST_TEST(r.desired.departments.at("2").leaders == std::vector<std::string>{"boss"});

    EventFetch gone;
    gone.users["boss"] = std::nullopt;
    auto r2 = patch_desired(cur, gone, m, 1);
    BOOST_TEST(!r2.desired.users.count("boss"));
    BOOST_TEST(r2.desired.departments.at("2").leaders.empty());  // a removed leader leaves the list
    BOOST_TEST(r2.desired.users.at("u1").manager == "");

    EventFetch removed_dept;
    removed_dept.departments[2] = std::nullopt;  // its subtree and memberships go with it
    auto r3 = patch_desired(cur, removed_dept, m, 1);
    BOOST_TEST(!r3.desired.departments.count("2"));
    BOOST_TEST(!r3.desired.departments.count("3"));
    BOOST_TEST(r3.desired.users.empty());
}

BOOST_AUTO_TEST_CASE(leader_flag_change_rereads_the_department) {
    OrgSnapshot cur = small_org();
    EventFetch f;
    dingtalk::MergedUser u;
    u.item.userid = "u1";
    u.item.dept_id_list = {3};
    u.places = {{3, 0, true}};
    f.users["u1"] = u;
    BOOST_TEST(leader_changes(cur, f) == std::vector<std::int64_t>{3});
    f.users["u1"]->places = {{3, 0, false}};
    BOOST_TEST(leader_changes(cur, f).empty());
}

BOOST_AUTO_TEST_SUITE_END()
