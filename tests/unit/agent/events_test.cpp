#include <simdjson.h>
#include <sqlite3.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <optional>
#include <set>

#include "agent/events/event_parse.h"
#include "agent/events/journal.h"
#include "agent/events/patch.h"
#include "agent/events/push.h"
#include "agent/mapping/mapping.h"
#include "shared/dingtalk_crypto.h"

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
    // Empty, and a view without data (events_fuzz found simdjson copying from a null pointer).
    JournalEvent empty;
    BOOST_TEST(!parse_event_payload(std::string_view{}, empty, error));
    BOOST_TEST(error == "empty event payload");
    BOOST_TEST(!parse_stream_frame(std::string_view{}, error).has_value());
    BOOST_TEST(error == "empty frame");
}

BOOST_AUTO_TEST_CASE(ack_frame_is_json_with_data_as_string) {
    std::string a = stream_ack("id\"1", 200, R"({"status":"SUCCESS"})");
    BOOST_TEST(a == R"({"code":200,"headers":{"contentType":"application/json","messageId":"id\"1"},"message":"OK",)"
                    R"("data":"{\"status\":\"SUCCESS\"}"})");
}

// LATER with code 200 read as delivered by a server that looks only at the code (the fact sheet:
// the Go SDK sends code 500 with LATER): the event the journal could not take would be lost.
BOOST_AUTO_TEST_CASE(later_ack_is_code_500_with_status_later) {
    std::string a = stream_later("m1", "journal unavailable");
    BOOST_TEST(a == R"({"code":500,"headers":{"contentType":"application/json","messageId":"m1"},"message":"LATER",)"
                    R"("data":"{\"status\":\"LATER\",\"message\":\"journal unavailable\"}"})");
}

namespace {

// A journal in a fresh temporary file, removed afterwards.
struct TempJournal {
    std::filesystem::path path;
    std::optional<Journal> journal;
    explicit TempJournal(const std::string& name)
        : path(std::filesystem::temp_directory_path() /
               ("dingbridge-" + name + "-" + std::to_string(getpid()) + ".db")) {
        std::filesystem::remove(path);
        journal.emplace(path.string());
    }
    ~TempJournal() {
        journal.reset();
        std::filesystem::remove(path);
    }
};

JournalEvent journal_event(std::string key, std::string type, std::vector<std::string> users,
                           std::vector<std::string> depts = {}) {
    JournalEvent e;
    e.dedup_key = std::move(key);
    e.source = "stream";
    e.event_type = std::move(type);
    e.user_ids = std::move(users);
    e.dept_ids = std::move(depts);
    return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(journal_deduplicates_and_counts_calls) {
    TempJournal t("journal");
    Journal& j = *t.journal;
    {
        const JournalEvent e = journal_event("event:1", "user_add_org", {"u1"});
        std::string error;
        BOOST_TEST((j.record(e, error) == RecordResult::inserted));
        BOOST_TEST((j.record(e, error) == RecordResult::duplicate));
        auto rows = j.pending(10);
        BOOST_TEST_REQUIRE(rows.size() == 1u);
        BOOST_TEST(rows[0].user_ids == e.user_ids);
        BOOST_TEST(j.mark_done({rows[0].id}, 7));
        BOOST_TEST(j.pending(10).empty());
        BOOST_TEST((j.record(e, error) == RecordResult::duplicate));  // a redelivery after apply
        BOOST_TEST(static_cast<bool>(j.add_calls(3, "event")));
        BOOST_TEST(static_cast<bool>(j.add_calls(2, "full")));
        BOOST_TEST(j.calls_in_month(Journal::this_month()) == 5);
        BOOST_TEST(j.calls_in_month(Journal::this_month(), "full") == 2);
    }
}

// A failed row waits before its next attempt, longer after each: give_up_after attempts then span
// minutes of a DingTalk outage (they were 5 s apart: about 30 s, and the events were given up).
BOOST_AUTO_TEST_CASE(journal_backs_off_a_failing_row) {
    TempJournal t("backoff");
    Journal& j = *t.journal;
    {
        std::string error;
        BOOST_TEST((j.record(journal_event("event:b", "user_modify_org", {"u1"}), error) == RecordResult::inserted));
        const std::int64_t id = j.pending(10).at(0).id;
        auto last_attempt_ago = [&](std::int64_t ms) {
            const std::string sql =
                "UPDATE event_journal SET done_ms=" + std::to_string(now_ms() - ms) + " WHERE id=" + std::to_string(id);
            BOOST_TEST_REQUIRE(sqlite3_exec(j.db(), sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
        };
        BOOST_TEST(j.mark_attempt({id}, "busy", 5));
        BOOST_TEST(j.pending(10).empty());  // just failed
        BOOST_TEST(j.pending_count() == 1);
        last_attempt_ago(5500);
        BOOST_TEST(j.pending(10).size() == 1u);  // 5 s after the first attempt
        BOOST_TEST(j.mark_attempt({id}, "busy", 5));
        last_attempt_ago(5500);
        BOOST_TEST(j.pending(10).empty());  // 20 s after the second
        last_attempt_ago(20500);
        BOOST_TEST(j.pending(10).size() == 1u);
        for (int i = 0; i < 2; ++i) BOOST_TEST(j.mark_attempt({id}, "busy", 5));
        last_attempt_ago(320 * 1000 - 1000);
        BOOST_TEST(j.pending(10).empty());  // after 4 attempts: 5 s x 4^3 = 5 min 20 s
        last_attempt_ago(320 * 1000 + 1000);
        BOOST_TEST(j.pending(10).size() == 1u);
        BOOST_TEST(j.mark_attempt({id}, "busy", 5));  // the fifth: given up
        BOOST_TEST(j.pending_count() == 0);
    }
}

// A partial full sync covers the pending events about what it did read and write, not those about
// an object it failed on (before: every pending row was marked done, and the failed object's
// change waited for the weekly reconcile).
BOOST_AUTO_TEST_CASE(a_partial_full_sync_leaves_the_rows_of_its_failed_objects_pending) {
    TempJournal t("covered");
    Journal& j = *t.journal;
    {
        std::string error;
        auto add = [&](const char* key, std::vector<std::string> users, std::vector<std::string> depts) {
            const char* type = users.empty() ? "org_dept_modify" : "user_modify_org";
            BOOST_TEST((j.record(journal_event(key, type, std::move(users), std::move(depts)), error) ==
                        RecordResult::inserted));
        };
        add("a", {"u1"}, {});
        add("b", {"u2"}, {});
        add("c", {}, {"7"});
        add("d", {}, {"8"});
        const auto after = now_ms() + 1;
        BOOST_TEST(j.mark_covered_by_full(after, 3, {}, {}, true));  // a department unread: none covered
        BOOST_TEST(j.pending_count() == 4);
        BOOST_TEST(j.mark_covered_by_full(after, 3, {"u2"}, {"8"}));
        std::set<std::string> left;
        for (const auto& r : j.pending(10)) left.insert(r.dedup_key);
        BOOST_TEST((left == std::set<std::string>{"b", "d"}));
        BOOST_TEST(j.mark_covered_by_full(after, 4));
        BOOST_TEST(j.pending_count() == 0);
    }
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

namespace {
namespace dc = dingbridge::dingtalk_crypto;
const std::string kPushToken = "tok3nForPush";
const std::string kPushKey = "abcdefghijABCDEFGHIJ0123456789abcdefghijABC";
const std::string kOwner = "dingappkey";

HttpRequestView signed_push(const std::string& msg, std::int64_t ts_ms, const std::string& path = "/p") {
    auto enc = dc::encrypt(kPushKey, kOwner, msg);
    const std::string ts = std::to_string(ts_ms), nonce = "n0nce";
    return {
        "POST",
        path + "?msg_signature=" + dc::signature(kPushToken, ts, nonce, *enc) + "&timeStamp=" + ts + "&nonce=" + nonce,
        "{\"encrypt\":\"" + *enc + "\"}"};
}
}  // namespace

BOOST_AUTO_TEST_CASE(push_official_vector_and_staleness) {
    // dingtalk-api.md §5's vector (timestamp in seconds, plaintext "success", not an event).
    PushSettings s{"/p", "123456", "1234567890123456789012345678901234567890123", "dingsnotzck6pm5veliw",
                   std::chrono::seconds(3600LL * 24 * 365 * 30)};
    int called = 0;
    PushReceiver r(s, [&](JournalEvent&&) { return ++called > 0; });
    HttpRequestView v{
        "POST", "/p?signature=9a95a004dd16f5c307e849b994173f76aa26e5eb&timestamp=1614767836&nonce=A7Co0cJLMzIDtMMI",
        R"({"encrypt":"YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA=="})"};
    BOOST_TEST(r.handle(v).status == 200);
    BOOST_TEST(called == 0);  // "success" is no event
    s.max_skew = std::chrono::seconds(300);
    PushReceiver fresh(s, [&](JournalEvent&&) { return true; });
    BOOST_TEST(fresh.handle(v).status == 403);  // from 2021: stale
    BOOST_TEST(fresh.stats().rejected.load() == 1u);
}

BOOST_AUTO_TEST_CASE(push_event_is_journaled_before_the_encrypted_success) {
    PushSettings s{"/p", kPushToken, kPushKey, kOwner, std::chrono::seconds(300)};
    std::vector<JournalEvent> got;
    bool journal_ok = true;
    PushReceiver r(s, [&](JournalEvent&& e) {
        got.push_back(e);
        return journal_ok;
    });
    const std::string ev = R"({"EventType":"user_modify_org","UserId":["u1"],"TimeStamp":"1640921671286"})";
    auto rep = r.handle(signed_push(ev, now_ms()));
    BOOST_TEST_REQUIRE(rep.status == 200, rep.body);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].source == "push");
    BOOST_TEST(got[0].user_ids == (std::vector<std::string>{"u1"}));
    BOOST_TEST(got[0].dedup_key.rfind("push:", 0) == 0u);  // no eventId: a hash of the event
    // The reply: signed with the token, decrypting to "success" with the owner key.
    simdjson::dom::parser p;
    simdjson::dom::element root;
    BOOST_TEST_REQUIRE(p.parse(rep.body).get(root) == simdjson::SUCCESS);
    std::string_view sig, ts, nonce, enc;
    BOOST_TEST_REQUIRE(
        (root["msg_signature"].get(sig) == simdjson::SUCCESS && root["timeStamp"].get(ts) == simdjson::SUCCESS &&
         root["nonce"].get(nonce) == simdjson::SUCCESS && root["encrypt"].get(enc) == simdjson::SUCCESS));
    BOOST_TEST(dc::signature(kPushToken, ts, nonce, enc) == std::string(sig));
    std::string err;
    BOOST_TEST(dc::decrypt(kPushKey, enc, kOwner, err).value_or("") == "success");
    // The same event again: the same dedup key (the journal makes it a no-op).
    BOOST_TEST(r.handle(signed_push(ev, now_ms())).status == 200);
    BOOST_TEST_REQUIRE(got.size() == 2u);
    BOOST_TEST(got[1].dedup_key == got[0].dedup_key);
    // eventId wins.
    BOOST_TEST(
        r.handle(signed_push(R"({"EventType":"org_dept_create","DeptId":[5],"eventId":"E9"})", now_ms())).status ==
        200);
    BOOST_TEST(got.back().dedup_key == "event:E9");
    // Journal unavailable: 503, no success (DingTalk pushes again).
    journal_ok = false;
    rep = r.handle(signed_push(ev, now_ms()));
    BOOST_TEST(rep.status == 503);
    BOOST_TEST(rep.body.find("encrypt") == std::string::npos);
    // check_url is answered without journaling.
    journal_ok = true;
    got.clear();
    BOOST_TEST(r.handle(signed_push(R"({"EventType":"check_url"})", now_ms())).status == 200);
    BOOST_TEST(got.empty());
}

BOOST_AUTO_TEST_CASE(push_refusals) {
    PushSettings s{"/p", kPushToken, kPushKey, kOwner, std::chrono::seconds(300)};
    int called = 0;
    PushReceiver r(s, [&](JournalEvent&&) { return ++called > 0; });
    const std::string ev = R"({"EventType":"user_add_org","UserId":["u1"]})";
    auto good = signed_push(ev, now_ms());
    BOOST_TEST(r.handle(signed_push(ev, now_ms(), "/other")).status == 404);
    BOOST_TEST(r.handle({"GET", good.target, good.body}).status == 405);
    BOOST_TEST(r.handle({"POST", "/p", good.body}).status == 400);                  // unsigned
    BOOST_TEST(r.handle({"POST", good.target, "{"}).status == 400);                 // not JSON
    BOOST_TEST(r.handle({"POST", good.target, R"({"encrypt":5})"}).status == 400);  // wrong type
    auto forged = good;
    forged.target[forged.target.find("msg_signature=") + 14] ^= 1;
    BOOST_TEST(r.handle(forged).status == 403);
    BOOST_TEST(r.handle(signed_push(ev, now_ms() - 301000)).status == 403);  // stale
    BOOST_TEST(r.handle(signed_push(ev, now_ms() + 301000)).status == 403);  // from the future
    auto bad_ts = good;
    bad_ts.target.replace(bad_ts.target.find("timeStamp=") + 10, 1, "x");
    BOOST_TEST(r.handle(bad_ts).status == 400);
    BOOST_TEST(called == 0);
    BOOST_TEST(r.handle(good).status == 200);
    BOOST_TEST(called == 1);
}

BOOST_AUTO_TEST_SUITE_END()
