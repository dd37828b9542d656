// Unit tests of the simulator's pure parts: callback crypto (official test vector, §5), JSON
// writer, glob patterns, ISO-8601, generator determinism and fixture round-trip.
#define BOOST_TEST_MODULE dingtalk_sim
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include "shared/dingtalk_crypto.h"
#include "tests/sim/faults.h"
#include "tests/sim/json.h"
#include "tests/sim/org.h"

namespace {
const char* kToken = "123456";
const char* kAesKey = "1234567890123456789012345678901234567890123";
const char* kOwner = "dingsnotzck6pm5veliw";
const char* kTimestamp = "1614767836";
const char* kNonce = "A7Co0cJLMzIDtMMI";
const char* kEncrypt = "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==";
}  // namespace

BOOST_AUTO_TEST_SUITE(callback_crypto)

BOOST_AUTO_TEST_CASE(signature_matches_official_test_vector) {
    BOOST_TEST(dingbridge::dingtalk_crypto::signature(kToken, kTimestamp, kNonce, kEncrypt) ==
               "9a95a004dd16f5c307e849b994173f76aa26e5eb");
}

BOOST_AUTO_TEST_CASE(official_test_vector_decrypts_to_success) {
    std::string error;
    auto msg = dingbridge::dingtalk_crypto::decrypt(kAesKey, kEncrypt, kOwner, error);
    BOOST_REQUIRE_MESSAGE(msg.has_value(), error);
    BOOST_TEST(*msg == "success");
}

BOOST_AUTO_TEST_CASE(wrong_owner_key_is_rejected) {
    std::string error;
    BOOST_TEST(!dingbridge::dingtalk_crypto::decrypt(kAesKey, kEncrypt, "dingother", error).has_value());
    BOOST_TEST(error.find("ownerKey") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(encrypt_round_trips_and_pads_to_32_bytes) {
    for (std::string msg : {std::string(), std::string("success"), std::string(12, 'x'), std::string(300, 'y')}) {
        auto enc = dingbridge::dingtalk_crypto::encrypt(kAesKey, kOwner, msg);
        BOOST_REQUIRE(enc.has_value());
        auto raw = dingbridge::dingtalk_crypto::base64_decode(*enc);
        BOOST_REQUIRE(raw.has_value());
        BOOST_TEST(raw->size() % 32 == 0u);
        std::string error;
        auto back = dingbridge::dingtalk_crypto::decrypt(kAesKey, *enc, kOwner, error);
        BOOST_REQUIRE_MESSAGE(back.has_value(), error);
        BOOST_TEST(*back == msg);
    }
}

BOOST_AUTO_TEST_CASE(fixed_random_prefix_reproduces_official_ciphertext) {
    // The official vector's plaintext is 64 bytes with pad 17: 16 + 4 + 7 + 20 = 47.
    std::string error;
    auto enc = dingbridge::dingtalk_crypto::encrypt(kAesKey, kOwner, "success", "0000000000000000");
    BOOST_REQUIRE(enc.has_value());
    BOOST_TEST(dingbridge::dingtalk_crypto::base64_decode(*enc)->size() == 64u);
}

BOOST_AUTO_TEST_CASE(garbage_ciphertext_fails_without_crashing) {
    std::string error;
    for (const char* bad :
         {"", "abc", "!!!!", "AAAAAAAAAAAAAAAAAAAAAA==", "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOU="})
        BOOST_TEST(!dingbridge::dingtalk_crypto::decrypt(kAesKey, bad, kOwner, error).has_value());
    BOOST_TEST(!dingbridge::dingtalk_crypto::decrypt("short", kEncrypt, kOwner, error).has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(helpers)

BOOST_AUTO_TEST_CASE(json_writer_escapes_and_keeps_utf8) {
    sim::JsonWriter w;
    w.begin_object()
        .kv("a", "q\"b\\n\n\x01")
        .kv("u", "张伟🐱")
        .key("l")
        .begin_array()
        .value(int64_t{1})
        .value(true)
        .end_array()
        .end_object();
    BOOST_TEST(w.str() == "{\"a\":\"q\\\"b\\\\n\\n\\u0001\",\"u\":\"张伟🐱\",\"l\":[1,true]}");
}

BOOST_AUTO_TEST_CASE(glob_patterns) {
    BOOST_TEST(sim::glob_match("/topapi/v2/user/*", "/topapi/v2/user/list"));
    BOOST_TEST(sim::glob_match("*", "/gettoken"));
    BOOST_TEST(sim::glob_match("/topapi/*/list", "/topapi/v2/user/list"));
    BOOST_TEST(!sim::glob_match("/topapi/v2/user/*", "/topapi/v2/department/get"));
    BOOST_TEST(!sim::glob_match("/gettoken", "/gettoken2"));
}

BOOST_AUTO_TEST_CASE(iso8601_parsing) {
    BOOST_TEST(*sim::parse_iso8601_ms("1970-01-01T00:00:00Z") == 0);
    BOOST_TEST(*sim::parse_iso8601_ms("2024-01-01T00:00Z") == 1704067200000LL);
    BOOST_TEST(*sim::parse_iso8601_ms("2024-01-01T08:00:00+08:00") == 1704067200000LL);
    BOOST_TEST(*sim::parse_iso8601_ms("2024-01-01T00:00:00.250Z") == 1704067200250LL);
    BOOST_TEST(!sim::parse_iso8601_ms("2024-01-01").has_value());
    BOOST_TEST(!sim::parse_iso8601_ms("yesterday").has_value());
    BOOST_TEST(sim::format_iso8601(1704067200000LL) == "2024-01-01T00:00:00Z");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(org)

BOOST_AUTO_TEST_CASE(generator_is_deterministic_and_round_trips_through_fixture) {
    sim::GenerateSpec spec;
    BOOST_REQUIRE(sim::parse_generate_spec("users=500,departments=40,depth=4,seed=7", spec).ok());
    auto a = sim::Org::generate(spec);
    auto b = sim::Org::generate(spec);
    BOOST_TEST(a->dump() == b->dump());
    BOOST_TEST(a->user_count(false) == 500u);
    BOOST_TEST(a->dept_count() == 41u);
    std::string error;
    auto c = sim::Org::load(a->dump(), error);
    BOOST_REQUIRE_MESSAGE(c, error);
    BOOST_TEST(c->dump() == a->dump());
}

BOOST_AUTO_TEST_CASE(bad_fixtures_name_the_problem) {
    std::string error;
    BOOST_TEST(!sim::Org::load("{", error));
    BOOST_TEST(!sim::Org::load("{\"departments\":[{\"dept_id\":2,\"name\":\"x\",\"parent_id\":1}]}", error));
    BOOST_TEST(error.find("root") != std::string::npos);
    BOOST_TEST(
        !sim::Org::load("{\"departments\":[{\"dept_id\":1,\"name\":\"r\"}],\"users\":[{\"userid\":\"u\",\"name\":\"n\","
                        "\"dept_id_list\":[9]}]}",
                        error));
    BOOST_TEST(error.find("users[0]") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_generate_spec_is_rejected) {
    sim::GenerateSpec spec;
    BOOST_TEST(!sim::parse_generate_spec("users=abc", spec).ok());
    BOOST_TEST(!sim::parse_generate_spec("colour=3", spec).ok());
}

BOOST_AUTO_TEST_SUITE_END()
