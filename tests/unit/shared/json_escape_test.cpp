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

BOOST_AUTO_TEST_CASE(appending_keeps_what_is_there) {
    std::string out = "\"";
    append_json_escaped(out, "x\"y");
    out += "\"";
    BOOST_TEST(out == "\"x\\\"y\"");
}

BOOST_AUTO_TEST_SUITE_END()
