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
