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
    // Each pair as slapd 2.5 held it, probed by adding both as sibling ou values: "same" pairs were
    // refused as "Already exists", "different" ones both added.
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
        // Before utf8proc (tables of our own) each of these was two names here and one in slapd,
        // so the second department failed with "Already exists" on every run.
        {"\u2460", "1"},               // circled digit one (NFKC)
        {"\uff71", "\u30a2"},          // half-width katakana
        {"\uff76\uff9e", "\u30ac"},    // half-width ka + voiced mark: ga (NFKC composes)
        {"\u00e9", "e\u0301"},         // precomposed and decomposed
        {"\u2126", "\u03c9"},          // Ohm sign, omega
        {"\u212a", "k"},               // Kelvin sign
        {"\u0531", "\u0561"},          // Armenian case
        {"\U00010400", "\U00010428"},  // Deseret case
        {"\u01c4", "\u01c6"},          // DZ with caron
        {"\ufb01", "fi"},              // ligature
        {"\u00b2", "2"},               // superscript
        {"\u3231", "(\u682a)"},        // parenthesized ideograph
        {"\ufe59", "("},               // small parenthesis
        {"\u00b5", "\u03bc"},          // micro sign, mu
    };
    for (const auto& [a, b] : same) BOOST_TEST(directory_match_key(a) == directory_match_key(b), a << " / " << b);
    const std::pair<const char*, const char*> different[] = {
        {"Sales", "Sales team"},
        {"张三", "张四"},
        {"a b", "ab"},
        {"\u00e9", "e"},
        // slapd keeps these apart; the key did not (it folded final sigma, dropped soft hyphens
        // and zero-width spaces), which gave a department a needless " (id)".
        {"\u00df", "ss"},
        {"\u03c2", "\u03c3"},
        {"a\u00adb", "ab"},
        {"a\u200bb", "ab"},
        {"\u0131", "i"},
        {"\u210c", "h"},
        // Kept apart from a space by slapd (probed): tabs, NEL, the line separator, Ogham.
        {"x\ty", "x y"},
        {"x\u0085y", "x y"},
        {"x\u2028y", "x y"},
        {"x\u1680y", "x y"}};
    for (const auto& [a, b] : different) BOOST_TEST(directory_match_key(a) != directory_match_key(b), a << " / " << b);
    BOOST_TEST(directory_match_key(std::string("X\xff y", 4)) == std::string("x\xff y", 4));  // not UTF-8: kept
}

BOOST_AUTO_TEST_CASE(scim_usernames_fold_at_least_as_far_as_a_service_may) {
    // A JavaScript toLowerCase service (tests/scim) holds each pair as one userName: two keys
    // here sent the second user's name and got 409 on every run.
    using dingbridge::scim_match_key;
    const std::pair<const char*, const char*> same[] = {
        {"\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2"},  // final sigma
        {"\u0130pek", "i\u0307pek"},                               // dotted capital I
        {"Stra\u00dfe", "strasse"},                                // full case folding
        {"\uff22\uff2f\uff22", "bob"},                             // full-width
        {"bob  smith", "Bob Smith"},
        {"a\tb", "a b"},
        {"e\u0301", "\u00e9"},
    };
    for (const auto& [a, b] : same) BOOST_TEST(scim_match_key(a) == scim_match_key(b), a << " / " << b);
    BOOST_TEST(scim_match_key("bob") != scim_match_key("bobby"));
    BOOST_TEST(scim_match_key("\u5f20\u4e09") != scim_match_key("\u5f20\u56db"));
}

BOOST_AUTO_TEST_SUITE_END()
