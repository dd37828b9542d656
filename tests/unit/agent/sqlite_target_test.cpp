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

// Count of rows a query returns on the file (a fresh connection: sees committed state only).
long long count_rows(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    BOOST_REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    BOOST_REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    long long n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) ++n;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

// The indexes on the users' unique values and on memberships by department, by name.
long long named_indexes(const std::string& path) {
    return count_rows(path,
                      "SELECT name FROM sqlite_master WHERE type='index' AND name IN ('users_username', "
                      "'users_email', 'users_phone', 'user_departments_dept')");
}

Change put(const OrgUser& u) {
    Change c;
    c.kind = ChangeKind::create_user;
    c.external_id = u.external_id;
    c.user = &u;
    return c;
}

// As apply_plan drives a target: batches, then finish_batches(), then commit. Returns
// "id: error" per failed change, in change order.
std::vector<std::string> apply_as_a_run(SqliteTarget& t, const std::vector<Change>& changes) {
    std::vector<std::string> failed;
    BOOST_REQUIRE(t.begin());
    std::vector<dingbridge::Status> outcomes;
    t.apply_batch(changes.data(), changes.size(), outcomes);
    for (std::size_t i = 0; i < changes.size(); ++i)
        if (!outcomes[i]) failed.push_back(std::string(changes[i].external_id) + ": " + outcomes[i].error());
    for (const auto& [c, error] : t.finish_batches()) failed.push_back(std::string(c->external_id) + ": " + error);
    BOOST_REQUIRE(t.commit());
    return failed;
}

// The schema of the versions before the unique indexes were named.
constexpr const char* kOlderSchema = R"SQL(
CREATE TABLE users (
  external_id TEXT PRIMARY KEY, union_id TEXT NOT NULL DEFAULT '', username TEXT UNIQUE,
  display_name TEXT NOT NULL DEFAULT '', email TEXT UNIQUE, phone TEXT UNIQUE,
  employee_number TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '', primary_department TEXT,
  manager TEXT, active INTEGER NOT NULL DEFAULT 1, avatar_url TEXT NOT NULL DEFAULT '',
  hired_at TEXT NOT NULL DEFAULT '', custom TEXT NOT NULL DEFAULT '{}', removed_at INTEGER,
  updated_at INTEGER NOT NULL);
)SQL";

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

// A first sync (an empty users table) builds the unique indexes once at the end of its
// transaction; afterwards they hold exactly as before, and a rolled-back run leaves them too.
BOOST_AUTO_TEST_CASE(a_first_sync_ends_with_every_index_in_place) {
    TempDb db;
    OrgUser a = member("a", {{"1", 1, false}});
    OrgUser b = member("b", {{"1", 2, false}, {"2", 1, true}});
    {
        SqliteTarget t(db.path);
        BOOST_TEST(named_indexes(db.path) == 4);
        // Rolled back: nothing written, nothing missing.
        BOOST_REQUIRE(t.begin());
        BOOST_REQUIRE(t.apply(put(a)));
        t.rollback();
        BOOST_TEST(named_indexes(db.path) == 4);
        BOOST_TEST(count_rows(db.path, "SELECT 1 FROM users") == 0);

        BOOST_TEST(apply_as_a_run(t, {put(a), put(b)}).empty());
    }
    BOOST_TEST(named_indexes(db.path) == 4);
    BOOST_TEST(count_rows(db.path, "SELECT 1 FROM user_departments") == 3);
    db.exec("UPDATE users SET phone='+1' WHERE external_id='a'");  // NULLs never collide
    for (const char* column : {"username", "email", "phone"}) {
        sqlite3* raw = nullptr;
        BOOST_REQUIRE(sqlite3_open(db.path.c_str(), &raw) == SQLITE_OK);
        const std::string sql = std::string("UPDATE users SET ") + column + "=(SELECT " + column +
                                " FROM users WHERE external_id='a') " + "WHERE external_id='b'";
        BOOST_TEST(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_CONSTRAINT, column);
        BOOST_TEST(std::string(sqlite3_errmsg(raw)) == std::string("UNIQUE constraint failed: users.") + column);
        sqlite3_close(raw);
    }
}

// A first sync skips looking for the memberships of a row it has just inserted; a second write of
// the same user in the run (an update) still replaces them.
BOOST_AUTO_TEST_CASE(a_user_written_twice_in_a_first_sync_keeps_the_second_memberships) {
    TempDb db;
    OrgUser first = member("a", {{"1", 1, false}, {"2", 1, false}});
    OrgUser second = member("a", {{"2", 4, true}, {"3", 1, false}});
    SqliteTarget t(db.path);
    BOOST_TEST(apply_as_a_run(t, {put(first), put(second)}).empty());
    auto read = t.read();
    BOOST_REQUIRE(read);
    const std::vector<Membership> want = {{"2", 4, true}, {"3", 1, false}};
    BOOST_TEST((read->users.at("a").departments == want));
}

// Two users with one email (the plan never writes that; a defect elsewhere could): written into
// an empty table or into one with rows, the first keeps it and the second fails with SQLite's
// own error, its row and memberships absent.
BOOST_AUTO_TEST_CASE(a_duplicate_fails_the_later_user_into_an_empty_table_as_into_a_full_one) {
    for (bool empty : {true, false}) {
        BOOST_TEST_CONTEXT((empty ? "empty table" : "table with rows")) {
            TempDb db;
            OrgUser a = member("a", {{"1", 1, false}});
            OrgUser b = member("b", {{"2", 1, false}});
            OrgUser c = member("c", {{"1", 3, false}});
            OrgUser z = member("z", {});
            b.email = a.email;
            SqliteTarget t(db.path);
            if (!empty) BOOST_TEST(apply_as_a_run(t, {put(z)}).empty());
            const auto failed = apply_as_a_run(t, {put(a), put(b), put(c)});
            BOOST_TEST(failed == std::vector<std::string>{"b: UNIQUE constraint failed: users.email"},
                       boost::test_tools::per_element());
            auto read = t.read();
            BOOST_REQUIRE(read);
            BOOST_TEST(read->users.count("a") == 1u);
            BOOST_TEST(read->users.count("b") == 0u);
            BOOST_TEST(read->users.count("c") == 1u);
            BOOST_TEST(read->users.at("a").email == "a@x");
            BOOST_TEST(count_rows(db.path, "SELECT 1 FROM user_departments WHERE user_external_id='b'") == 0);
            BOOST_TEST(count_rows(db.path, "SELECT 1 FROM user_departments") == 2);
            BOOST_TEST(named_indexes(db.path) == 4);
        }
    }
}

// A department removed in a first sync: its memberships are looked up through the index, which
// the run builds again before that, and keeps even when the batch that built it failed and was
// replayed change by change.
BOOST_AUTO_TEST_CASE(a_department_removed_in_a_first_sync_takes_its_memberships) {
    TempDb db;
    OrgUser a = member("a", {{"1", 1, false}, {"2", 1, false}});
    OrgDepartment gone;
    gone.external_id = "2";
    gone.name = "gone";
    SqliteTarget t(db.path);
    Change remove;
    remove.kind = ChangeKind::delete_department;
    remove.external_id = "2";
    remove.department = &gone;
    Change broken;  // a create without its row: fails, so the batch is rolled back and replayed
    broken.kind = ChangeKind::create_user;
    broken.external_id = "x";
    BOOST_TEST(apply_as_a_run(t, {put(a), remove, broken}) == std::vector<std::string>{"x: no user in the change"},
               boost::test_tools::per_element());
    BOOST_TEST(count_rows(db.path, "SELECT 1 FROM user_departments") == 1);
    BOOST_TEST(named_indexes(db.path) == 4);
}

// A database from before the indexes were named keeps its UNIQUE columns (they cannot be
// dropped) and gets no second set of indexes; its constraints hold as they did.
BOOST_AUTO_TEST_CASE(an_older_database_keeps_its_unique_columns) {
    TempDb db;
    db.exec(kOlderSchema);
    OrgUser a = member("a", {});
    OrgUser b = member("b", {});
    b.username = a.username;
    SqliteTarget t(db.path);
    BOOST_TEST(count_rows(db.path,
                          "SELECT name FROM sqlite_master WHERE name IN ('users_username', 'users_email', "
                          "'users_phone')") == 0);
    BOOST_TEST(
        apply_as_a_run(t, {put(a), put(b)}) == std::vector<std::string>{"b: UNIQUE constraint failed: users.username"},
        boost::test_tools::per_element());
    BOOST_TEST(count_rows(db.path, "SELECT 1 FROM users") == 1);
}

// A new file gets 16 KiB pages (a fifth of the page reads and writes of a large sync); a file an
// earlier version made (4 KiB pages, already in WAL mode) keeps its own and is written as before.
BOOST_AUTO_TEST_CASE(a_new_file_has_16_kib_pages_and_an_older_one_keeps_its_own) {
    const auto page_size = [](const std::string& path) {
        sqlite3* h = nullptr;
        BOOST_REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
        sqlite3_stmt* st = nullptr;
        BOOST_REQUIRE(sqlite3_prepare_v2(h, "PRAGMA page_size", -1, &st, nullptr) == SQLITE_OK);
        BOOST_REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        const long long size = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(h);
        return size;
    };
    OrgSnapshot desired;
    desired.users["a"] = member("a", {});
    TempDb fresh, older;
    older.exec("PRAGMA page_size=4096; PRAGMA journal_mode=WAL;");
    older.exec(kOlderSchema);
    for (const TempDb* db : {&fresh, &older}) {
        SqliteTarget t(db->path);
        write_all(t, desired);
        BOOST_TEST(count_rows(db->path, "SELECT 1 FROM users WHERE external_id='a'") == 1);
    }
    BOOST_TEST(page_size(fresh.path) == 16384);
    BOOST_TEST(page_size(older.path) == 4096);
}

BOOST_AUTO_TEST_SUITE_END()
