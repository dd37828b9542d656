#include "shared/base64.h"

#include <boost/test/unit_test.hpp>
#include <string>

using namespace dingbridge;

BOOST_AUTO_TEST_SUITE(base64)

BOOST_AUTO_TEST_CASE(decoding_is_strict) {
    BOOST_TEST(*base64_decode("YWxpY2U6c2VjcmV0") == "alice:secret");
    BOOST_TEST(*base64_decode("YQ==") == "a");
    BOOST_TEST(*base64_decode("") == "");
    BOOST_TEST(!base64_decode("YQ="));
    BOOST_TEST(!base64_decode("Y=Q="));
    BOOST_TEST(!base64_decode("YQ==YQ=="));
    BOOST_TEST(!base64_decode("YW Jj"));   // no whitespace
    BOOST_TEST(!base64_decode("YWJj\n"));  // nor a trailing newline
    BOOST_TEST(!base64_decode("YW-j"));    // not the URL-safe alphabet
}

// RFC 4648 §10 test vectors, and every byte value through a round trip.
BOOST_AUTO_TEST_CASE(encodes_the_rfc_vectors_and_round_trips) {
    const char* vectors[][2] = {{"", ""},
                                {"f", "Zg=="},
                                {"fo", "Zm8="},
                                {"foo", "Zm9v"},
                                {"foob", "Zm9vYg=="},
                                {"fooba", "Zm9vYmE="},
                                {"foobar", "Zm9vYmFy"}};
    for (const auto& v : vectors) {
        BOOST_TEST(base64_encode(v[0]) == v[1]);
        BOOST_TEST(*base64_decode(v[1]) == v[0]);
    }
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (std::size_t n = 0; n <= all.size(); n += 37)
        BOOST_TEST(*base64_decode(base64_encode(all.substr(0, n))) == all.substr(0, n));
}

BOOST_AUTO_TEST_SUITE_END()
