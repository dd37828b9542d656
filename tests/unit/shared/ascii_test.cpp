#include "shared/ascii.h"

#include <boost/test/unit_test.hpp>

using dingbridge::ascii_lower;

BOOST_AUTO_TEST_SUITE(ascii)

BOOST_AUTO_TEST_CASE(folds_ascii_letters_only) {
    BOOST_TEST(ascii_lower("CN=Admin,OU=People,DC=Example") == "cn=admin,ou=people,dc=example");
    BOOST_TEST(ascii_lower("objectClass inetOrgPerson 0-9 @[`{") == "objectclass inetorgperson 0-9 @[`{");
    BOOST_TEST(ascii_lower("") == "");
}

BOOST_AUTO_TEST_CASE(leaves_utf8_and_other_high_bytes_alone) {
    // What a Latin-1 locale's tolower would fold (0xC0-0xDE) stays, so UTF-8 is never corrupted.
    BOOST_TEST(ascii_lower("张三 ÉCOLE Ärger") == "张三 École Ärger");
    const std::string latin1("\xC0\xC9\xDE\xFF", 4);
    BOOST_TEST(ascii_lower(latin1) == latin1);
    BOOST_TEST(ascii_lower(std::string("A\0B", 3)) == std::string("a\0b", 3));
}

BOOST_AUTO_TEST_SUITE_END()

#include "shared/match_key.h"

BOOST_AUTO_TEST_SUITE(match_key)

BOOST_AUTO_TEST_CASE(names_a_directory_holds_equal_have_one_key) {
    // slapd holds each pair as one ou value (RFC 4518: case folded, NFKC, spaces insignificant).
    using dingbridge::directory_match_key;
    const std::pair<const char*, const char*> same[] = {
        {"Sales team", "  sales   TEAM "},
        {"ＩＴ部", "IT部"},
        {"a\u3000b", "a b"},
        {"x\u00a0y", "x y"},
        {"\u00c9mile", "\u00e9mile"},
        {"\u0152uvre \u0178", "\u0153uvre \u00ff"},
        {"\u0391\u0398\u0397\u039d\u0391", "\u03b1\u03b8\u03b7\u03bd\u03b1"},
        {"\u0418\u0412\u0410\u041d \u0401", "\u0438\u0432\u0430\u043d \u0451"},
        {"soft\u00adhyphen\u200b", "softhyphen"},
        {"\ufeffBOM", "bom"},
    };
    for (const auto& [a, b] : same) BOOST_TEST(directory_match_key(a) == directory_match_key(b), a << " / " << b);
    const std::pair<const char*, const char*> different[] = {
        {"Sales", "Sales team"}, {"张三", "张四"}, {"a b", "ab"}, {"\u00e9", "e"}};
    for (const auto& [a, b] : different) BOOST_TEST(directory_match_key(a) != directory_match_key(b), a << " / " << b);
    BOOST_TEST(directory_match_key(std::string("x\xff y", 4)) == std::string("x\xff y", 4));  // not UTF-8: kept
}

BOOST_AUTO_TEST_SUITE_END()
