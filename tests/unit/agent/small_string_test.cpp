#include "agent/org/small_string.h"

#include <boost/test/unit_test.hpp>
#include <map>
#include <sstream>
#include <unordered_set>
#include <utility>
#include <vector>

using namespace dingbridge::agent;

BOOST_AUTO_TEST_SUITE(small_string)

// Every length around the inline limit (15 bytes) and the text sizes seen in a real org (a userid,
// a Chinese name in UTF-8, an email, an avatar URL), through copy, move and assignment.
BOOST_AUTO_TEST_CASE(keeps_any_text_through_copy_move_and_assignment) {
    std::vector<std::string> texts = {"",
                                      "a",
                                      "user00001",
                                      "张三丰",
                                      std::string(14, 'x'),
                                      std::string(15, 'y'),
                                      std::string(16, 'z'),
                                      "someone.longer@example.com",
                                      "https://static-legacy.dingtalk.com/media/lADPDg7mViaksW3NAyDNAyA_800_800.jpg",
                                      std::string("nul\0inside", 10)};
    for (const auto& t : texts) {
        SmallString s(t);
        BOOST_TEST(s.size() == t.size());
        BOOST_TEST(s.empty() == t.empty());
        BOOST_TEST(s.view() == std::string_view(t));
        BOOST_TEST(s.c_str()[t.size()] == '\0');  // NUL-terminated for C APIs (SQLite, libldap)
        BOOST_TEST(s.on_heap() == (t.size() > 15));
        SmallString copy = s;
        BOOST_TEST(copy == s);
        BOOST_TEST(copy.str() == t);
        SmallString moved = std::move(copy);
        BOOST_TEST(moved.str() == t);
        BOOST_TEST(copy.empty());      // NOLINT(bugprone-use-after-move): a moved-from string is empty
        for (const auto& u : texts) {  // assignment between every pair of sizes
            SmallString a(t);
            a = SmallString(u);
            BOOST_TEST(a.str() == u);
            SmallString b(t);
            b = u;
            BOOST_TEST(b.str() == u);
        }
    }
}

// SQLite gives a NULL column as a null pointer: an empty view with no data.
BOOST_AUTO_TEST_CASE(from_an_empty_view_without_data) {
    SmallString s{std::string_view()};
    BOOST_TEST(s.empty());
    s = "x";
    s = std::string_view();
    BOOST_TEST(s.empty());
    BOOST_TEST(s.c_str()[0] == '\0');
}

// Assigning a part of its own text (a view into itself) must not read freed memory.
BOOST_AUTO_TEST_CASE(self_assignment_from_its_own_text) {
    SmallString s(std::string(40, 'a') + "tail");
    s = s.view().substr(40);
    BOOST_TEST(s.str() == "tail");
    SmallString t(std::string(30, 'b'));
    t = t.view();
    BOOST_TEST(t.str() == std::string(30, 'b'));
    SmallString& alias = t;
    t = alias;
    BOOST_TEST(t.str() == std::string(30, 'b'));
}

BOOST_AUTO_TEST_CASE(compares_orders_hashes_and_joins_like_std_string) {
    SmallString a("alice"), b(std::string(20, 'b'));
    std::string sa = "alice";
    BOOST_TEST((a == sa));
    BOOST_TEST((sa == a));
    BOOST_TEST((a == "alice"));
    BOOST_TEST((a != b));
    BOOST_TEST((a < b));
    BOOST_TEST((a < std::string_view("alicf")));
    BOOST_TEST(std::hash<SmallString>{}(a) == std::hash<std::string_view>{}("alice"));
    BOOST_TEST("user " + a + "!" == "user alice!");
    BOOST_TEST(sa + a == "alicealice");
    std::map<SmallString, int> m{{b, 2}, {a, 1}};
    BOOST_TEST(m.begin()->first == "alice");
    std::unordered_set<SmallString> set{a, SmallString("alice"), b};
    BOOST_TEST(set.size() == 2u);
    std::ostringstream out;
    out << a << '/' << b;
    BOOST_TEST(out.str() == "alice/" + std::string(20, 'b'));
    SmallString c("ab");
    c += std::string(20, 'c');
    BOOST_TEST(c.size() == 22u);
    BOOST_TEST(c.on_heap());
    c.clear();
    BOOST_TEST(c.empty());
    BOOST_TEST(c.c_str()[0] == '\0');
}

BOOST_AUTO_TEST_SUITE_END()

#include "agent/org/schema.h"

BOOST_AUTO_TEST_SUITE(custom_fields)

// A user without custom fields holds no map, yet reads, compares and copies like an empty one.
BOOST_AUTO_TEST_CASE(no_map_until_a_field_is_set) {
    CustomFields none, emptied;
    BOOST_TEST(none.empty());
    BOOST_TEST(none.count("desk") == 0u);
    BOOST_TEST((none.find("desk") == none.end()));
    BOOST_TEST((none.begin() == none.end()));
    BOOST_TEST(none.map().empty());
    emptied["desk"] = "3F";
    BOOST_TEST(!(emptied == none));
    for (auto it = emptied.begin(); it != emptied.end();) it = emptied.erase(it);
    BOOST_TEST((emptied == none));  // an emptied map equals none: the diff sees no change
    for (auto it = none.begin(); it != none.end();) it = none.erase(it);  // no map: nothing to visit

    CustomFields a{{"desk", "3F"}, {"hobby", "旅游"}};
    CustomFields b = a;
    BOOST_TEST((a == b));
    b["desk"] = "4F";
    BOOST_TEST(a.at("desk") == "3F");  // a copy is its own
    BOOST_TEST(b.at("desk") == "4F");
    a = std::map<std::string, std::string>{};
    BOOST_TEST(a.empty());
    BOOST_TEST(b.size() == 2u);

    OrgUser u, v;
    v.custom["x"] = "";
    BOOST_TEST(!(u == v));  // a key with an empty value is still a field
    v.custom.clear();
    BOOST_TEST((u == v));
}

BOOST_AUTO_TEST_SUITE_END()
