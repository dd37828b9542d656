#include "shared/json_escape.h"

#include <boost/test/unit_test.hpp>

using namespace dingbridge;

BOOST_AUTO_TEST_SUITE(json_escape)

BOOST_AUTO_TEST_CASE(quotes_backslashes_and_control_characters_are_escaped_utf8_passes) {
    BOOST_TEST(dingbridge::json_escape("plain") == "plain");
    BOOST_TEST(dingbridge::json_escape("say \"hi\"\\now") == "say \\\"hi\\\"\\\\now");
    BOOST_TEST(dingbridge::json_escape("a\nb\rc\td\be\ff") == "a\\nb\\rc\\td\\be\\ff");
    BOOST_TEST(dingbridge::json_escape(std::string("\x01\x1f\x7f", 3)) == "\\u0001\\u001f\\u007f");
    BOOST_TEST(dingbridge::json_escape(std::string("nul\0end", 7)) == "nul\\u0000end");
    BOOST_TEST(dingbridge::json_escape("张三 ✓") == "张三 ✓");
}

BOOST_AUTO_TEST_CASE(unicode_line_breaks_and_bytes_that_are_not_utf8_are_escaped) {
    // Before: a Basic user name with U+2028 split one access-log record in two for readers that
    // split on Unicode line breaks, and bytes that are not UTF-8 made the line invalid JSON.
    BOOST_TEST(dingbridge::json_escape("a\u2028b\u2029c\u0085d") == "a\\u2028b\\u2029c\\u0085d");
    BOOST_TEST(dingbridge::json_escape(std::string("x\xff\xc0\xafy", 5)) == "x\\ufffd\\ufffd\\ufffdy");  // overlong '/'
    BOOST_TEST(dingbridge::json_escape(std::string("\xed\xa0\x80", 3)) == "\\ufffd\\ufffd\\ufffd");      // a surrogate
    BOOST_TEST(dingbridge::json_escape(std::string("\xe5\xbc", 2)) == "\\ufffd\\ufffd");                 // cut short
    BOOST_TEST(dingbridge::json_escape("\U0001F600 \u00e9") == "\U0001F600 \u00e9");  // 4 and 2 bytes pass
}

BOOST_AUTO_TEST_CASE(appending_keeps_what_is_there) {
    std::string out = "\"";
    append_json_escaped(out, "x\"y");
    out += "\"";
    BOOST_TEST(out == "\"x\\\"y\"");
}

BOOST_AUTO_TEST_SUITE_END()
