#include "agent/targets/sqlite_target.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>

using namespace dingbridge::agent;

namespace {

struct TempDb {
    std::string dir, path;
    TempDb() {
        std::string t = (std::filesystem::temp_directory_path() / "dingbridge-target-XXXXXX").string();
        BOOST_REQUIRE(mkdtemp(t.data()) != nullptr);
        dir = t;
        path = t + "/target.db";
    }
    ~TempDb() { std::filesystem::remove_all(dir); }
    // Raw SQL on the file, as an older version or another tool may have left it.
    void exec(const char* sql) const {
        sqlite3* db = nullptr;
        BOOST_REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        char* err = nullptr;
        const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
        BOOST_TEST(rc == SQLITE_OK, (err ? err : ""));
        sqlite3_free(err);
        sqlite3_close(db);
    }
};

OrgUser member(const std::string& id, std::vector<Membership> places) {
    OrgUser u;
    u.external_id = id;
    u.username = id;
    u.display_name = id;
    u.email = id + "@x";
    u.primary_department = places.empty() ? "" : places.front().department;
    u.departments = std::move(places);
    return u;
}

void write_all(SqliteTarget& t, const OrgSnapshot& desired) {
    SyncPlan p = make_plan(desired, OrgSnapshot{}, {});
    BOOST_REQUIRE(t.begin());
    for (const auto& c : p.changes) BOOST_REQUIRE(t.apply(c));
    BOOST_REQUIRE(t.commit());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sqlite_target)

// A resync reads the target against the desired org: rows equal to it come back as ids only, the
// rest as full rows with their memberships, exactly as a plain read() has them.
BOOST_AUTO_TEST_CASE(read_against_keeps_equal_users_as_ids_and_the_rest_whole) {
    TempDb db;
    OrgSnapshot desired;
    for (const char* id : {"1", "2"}) {
        OrgDepartment d;
        d.external_id = id;
        d.name = std::string("dept ") + id;
        d.parent_external_id = std::string(id) == "1" ? "" : "1";
        desired.departments[id] = d;
    }
    desired.users["a"] = member("a", {{"2", 5, true}, {"1", 7, false}});
    desired.users["b"] = member("b", {{"1", 1, false}});
    desired.users["c"] = member("c", {});
    desired.users["r"] = member("r", {{"2", 3, false}});
    {
        SqliteTarget t(db.path);
        write_all(t, desired);
    }
    // r removed by an older version that kept its memberships; memberships without a user row
    // sort before, between and after the users.
    db.exec(
        "UPDATE users SET removed_at=100, active=0 WHERE external_id='r';"
        "INSERT INTO user_departments(user_external_id, department_external_id, position) VALUES"
        "('0', '1', 0), ('b0', '1', 0), ('zz', '2', 0);");
    desired.users.erase("r");
    desired.users["b"].title = "lead";                   // changed in DingTalk
    desired.users["a"].departments[1].order = 7;         // unchanged
    desired.users["c"].departments = {{"1", 2, false}};  // joined a department
    desired.users["c"].primary_department = "1";

    SqliteTarget t(db.path);
    auto whole = t.read();
    BOOST_REQUIRE(whole);
    auto against = t.read_against(desired);
    BOOST_REQUIRE(against);
    BOOST_TEST(against->users_as_desired == std::vector<std::string>{"a"});
    BOOST_TEST(against->user_count() == 3u);
    BOOST_REQUIRE_EQUAL(against->users.size(), 2u);
    BOOST_TEST((against->users.at("b") == whole->users.at("b")));
    BOOST_TEST((against->users.at("c") == whole->users.at("c")));
    BOOST_TEST((whole->users.at("a") == desired.users.at("a")));
    const std::vector<Membership> a_places = {{"2", 5, true}, {"1", 7, false}};
    BOOST_TEST((whole->users.at("a").departments == a_places));
    BOOST_TEST(whole->users.at("b").departments.size() == 1u);
    BOOST_TEST(whole->users.at("c").departments.empty());
    BOOST_TEST(whole->users.count("0") + whole->users.count("b0") + whole->users.count("zz") == 0u);
    for (const auto* s : {&*whole, &*against}) {
        BOOST_TEST(s->removed_users.at("r") == 100);
        BOOST_TEST(s->removed_user_rows.at("r").departments.size() == 1u);
        BOOST_TEST(s->departments.size() == 2u);
    }
    // The same plan either way: b and c updated, r drops its memberships, nothing for a.
    auto plan_text = [&](const OrgSnapshot& current) {
        std::string s;
        for (const auto& c : make_plan(desired, current, {}).changes)
            s += std::string(change_kind_name(c.kind)) + " " + c.external_id + " (" + c.detail + ")\n";
        return s;
    };
    BOOST_TEST(plan_text(*against) == plan_text(*whole));
    BOOST_TEST(plan_text(*whole) ==
               "update_user b (title)\n"
               "update_user c (departments, primary_department)\n"
               "disable_user r (removed earlier; drops its department memberships)\n");
}

BOOST_AUTO_TEST_SUITE_END()
