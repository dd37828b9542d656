#include "shared/password.h"

#include <boost/test/unit_test.hpp>

using namespace dingbridge;

BOOST_AUTO_TEST_SUITE(password)

BOOST_AUTO_TEST_CASE(hash_verifies_only_the_right_password) {
    const ScryptParams fast{10, 8, 1};
    auto h = PasswordHash::create("correct horse", fast);
    BOOST_TEST(h.verify("correct horse"));
    BOOST_TEST(!h.verify("correct horsE"));
    BOOST_TEST(!h.verify(""));
    auto round_trip = PasswordHash::parse(h.to_string(), nullptr);
    BOOST_REQUIRE(round_trip);
    BOOST_TEST(round_trip->verify("correct horse"));
    BOOST_TEST(h.to_string().rfind("$scrypt$ln=10,r=8,p=1$", 0) == 0);
}

BOOST_AUTO_TEST_CASE(same_password_gets_different_salts) {
    const ScryptParams fast{10, 8, 1};
    BOOST_TEST(PasswordHash::create("pw", fast).to_string() != PasswordHash::create("pw", fast).to_string());
}

BOOST_AUTO_TEST_CASE(default_parameters_are_slow_scrypt) {
    BOOST_TEST(PasswordHash::create("pw").to_string().rfind("$scrypt$ln=15,r=8,p=1$", 0) == 0);
}

BOOST_AUTO_TEST_CASE(a_decoy_matches_no_password_and_keeps_its_parameters) {
    const ScryptParams params{11, 4, 2};
    const auto decoy = PasswordHash::decoy(params);
    BOOST_TEST(!decoy.verify(""));
    BOOST_TEST(!decoy.verify("pw"));
    BOOST_TEST(decoy.to_string().rfind("$scrypt$ln=11,r=4,p=2$", 0) == 0);
    BOOST_TEST(PasswordHash::decoy(params).to_string() != decoy.to_string());
}

BOOST_AUTO_TEST_CASE(refuses_plain_and_malformed_hashes) {
    std::string error;
    BOOST_TEST(!PasswordHash::parse("hunter2", &error));
    BOOST_TEST(error.find("hash-password") != std::string::npos);
    BOOST_TEST(!PasswordHash::parse("$scrypt$ln=15,r=8$c2FsdHNhbHQ=$aGFzaA==", &error));
    BOOST_TEST(!PasswordHash::parse("$scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ=$aGFzaA==", &error));
    BOOST_TEST(!PasswordHash::parse("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ=$aGFzaA==", &error));  // short digest
    BOOST_TEST(!PasswordHash::parse("$scrypt$ln=15,r=8,p=1$!!$aGFzaA==", &error));
}

BOOST_AUTO_TEST_SUITE_END()
