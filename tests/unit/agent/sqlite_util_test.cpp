#include "agent/targets/sqlite_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <stdexcept>

#include "agent/org/small_string.h"

using namespace dingbridge::agent;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        std::string t = (std::filesystem::temp_directory_path() / "dingbridge-sqlite-XXXXXX").string();
        BOOST_REQUIRE(mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

const char* kSchema = "CREATE TABLE IF NOT EXISTS t (s TEXT, n TEXT, i INTEGER, b INTEGER, l TEXT, m TEXT);";

// The message of the runtime_error `f` throws ("" when it throws none).
template <class F>
std::string thrown(F f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sqlite_helpers)

BOOST_AUTO_TEST_CASE(a_row_bound_with_bind_all_reads_back_with_columns) {
    TempDir dir;
    sqlite3* db = sqlite_util::open_database(
        dir.path + "/a.db", {"the test database", "the test schema", 1000, {"PRAGMA journal_mode=WAL"}, kSchema});
    {
        Stmt wal(db, "PRAGMA journal_mode");
        BOOST_REQUIRE(wal.step() == SQLITE_ROW);
        BOOST_TEST(wal.text(0) == "wal");
        Stmt ins(db, "INSERT INTO t VALUES(?1,?2,?3,?4,?5,?6)");
        const std::vector<std::string> list = {"a", "b\"c"};
        const std::map<std::string, std::string> map = {{"k", "v"}};
        ins.bind_all(std::string("text"), Stmt::or_null(std::string()), std::int64_t{42}, true, json_string_list(list),
                     json_string_map(map));
        BOOST_TEST(ins.run().ok());
        Stmt sel(db, "SELECT s, n, i, b, l, m FROM t");
        BOOST_REQUIRE(sel.step() == SQLITE_ROW);
        BOOST_TEST(sel.is_null(1));  // the empty text was bound as NULL
        std::string s, n = "x";
        std::int64_t i = 0;
        bool b = false;
        std::vector<std::string> l;
        std::map<std::string, std::string> m;
        sel.columns(s, n, i, b, l, m);
        BOOST_TEST(s == "text");
        BOOST_TEST(n == "");
        BOOST_TEST(i == 42);
        BOOST_TEST(b);
        BOOST_TEST((l == list));
        BOOST_TEST((m == map));
    }
    sqlite3_close(db);
}

BOOST_AUTO_TEST_CASE(texts_bind_from_views_and_small_strings_and_an_empty_one_stays_text) {
    TempDir dir;
    sqlite3* db =
        sqlite_util::open_database(dir.path + "/v.db", {"the test database", "the test schema", 1000, {}, kSchema});
    {
        // A user field (SmallString) longer than its inline capacity, one inside it, an empty
        // view with no data pointer (it must stay '' and not become NULL), and or_null of one.
        const SmallString long_text("a text longer than sixteen bytes");
        const SmallString short_text("short");
        Stmt ins(db, "INSERT INTO t(s, n, l, m) VALUES(?1,?2,?3,?4)");
        ins.bind_all(long_text, short_text, std::string_view{}, Stmt::or_null(SmallString()));
        BOOST_TEST(ins.run().ok());
        Stmt sel(db, "SELECT s, n, typeof(l), l, typeof(m) FROM t");
        BOOST_REQUIRE(sel.step() == SQLITE_ROW);
        BOOST_TEST(sel.text(0) == "a text longer than sixteen bytes");
        BOOST_TEST(sel.text(1) == "short");
        BOOST_TEST(sel.text(2) == "text");
        BOOST_TEST(sel.text(3) == "");
        BOOST_TEST(sel.text(4) == "null");
    }
    sqlite3_close(db);
}

BOOST_AUTO_TEST_CASE(each_row_visits_every_row_and_reports_a_failed_query) {
    TempDir dir;
    sqlite3* db =
        sqlite_util::open_database(dir.path + "/r.db", {"the test database", "the test schema", 1000, {}, kSchema});
    BOOST_TEST(sqlite_util::exec(db, "INSERT INTO t(i) VALUES(1),(2),(3)").ok());
    {
        Stmt sel(db, "SELECT i FROM t ORDER BY i");
        std::vector<std::int64_t> seen;
        BOOST_TEST(sel.each_row([&] { seen.push_back(sel.integer(0)); }).ok());
        BOOST_TEST((seen == std::vector<std::int64_t>{1, 2, 3}));
        Stmt bad(db, "SELECT nosuchcolumn FROM t");
        const dingbridge::Status r = bad.each_row([] { BOOST_FAIL("no row expected"); });
        BOOST_REQUIRE(!r.ok());
        BOOST_TEST(r.error().find("nosuchcolumn") != std::string::npos, r.error());
    }
    sqlite3_close(db);
}

BOOST_AUTO_TEST_CASE(an_unopenable_file_or_a_bad_schema_is_named_in_the_error) {
    TempDir dir;
    const std::string missing = dir.path + "/no/such/dir/a.db";
    BOOST_TEST(thrown([&] {
                   sqlite_util::open_database(missing, {"the test database", "the test schema", 1000, {}, kSchema});
               }).rfind("cannot open the test database " + missing + ": ", 0) == 0);
    const std::string path = dir.path + "/b.db";
    BOOST_TEST(thrown([&] {
                   sqlite_util::open_database(path, {"the test database", "the test schema", 1000, {}, "CREATE TABLE"});
               }).rfind("cannot create the test schema in " + path + ": ", 0) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
