#include "proxy/request_head.h"

#include <boost/test/unit_test.hpp>

#include "tests/unit/proxy/printers.h"

using namespace dingbridge::proxy;

namespace {
HeadResult parse(const std::string& s) { return parse_connect_head(s); }
}  // namespace

BOOST_AUTO_TEST_SUITE(request_head)

BOOST_AUTO_TEST_CASE(accepts_connect_with_basic_credentials) {
    // "alice:s3cret:with:colons" — the password may contain colons.
    auto r = parse(
        "CONNECT oapi.DingTalk.com:443 HTTP/1.1\r\nHost: oapi.dingtalk.com:443\r\n"
        "Proxy-Authorization: Basic YWxpY2U6czNjcmV0OndpdGg6Y29sb25z\r\n\r\n");
    BOOST_TEST(static_cast<int>(r.error) == static_cast<int>(HeadError::none));
    BOOST_TEST(r.request.host == "oapi.dingtalk.com");
    BOOST_TEST(r.request.port == 443);
    BOOST_TEST(r.request.basic->user == "alice");
    BOOST_TEST(r.request.basic->password == "s3cret:with:colons");
}

BOOST_AUTO_TEST_CASE(normalizes_ip_targets) {
    BOOST_TEST(parse("CONNECT [::FFFF:127.0.0.1]:443 HTTP/1.1\r\n\r\n").error == HeadError::bad_target);
    auto v6 = parse("CONNECT [::1]:443 HTTP/1.1\r\n\r\n");
    BOOST_TEST(v6.request.host == "::1");
    BOOST_TEST(v6.request.host_is_ip);
    auto v4 = parse("CONNECT 127.0.0.1:8443 HTTP/1.0\r\n\r\n");
    BOOST_TEST(v4.request.host == "127.0.0.1");
    auto dot = parse("CONNECT example.com.:443 HTTP/1.1\r\n\r\n");
    BOOST_TEST(dot.request.host == "example.com");
}

BOOST_AUTO_TEST_CASE(refuses_numeric_spellings_of_addresses) {
    for (const char* target : {"2130706433:443", "0x7f.1:443", "0x7f000001:443", "127.1:443", "0177.0.0.1:443",
                               "127.0.0.1.:443", "[fe80::1%25eth0]:443", "[127.0.0.1]:443", "::1:443"}) {
        auto r = parse(std::string("CONNECT ") + target + " HTTP/1.1\r\n\r\n");
        BOOST_TEST((r.error == HeadError::bad_target || r.error == HeadError::malformed), target);
    }
}

BOOST_AUTO_TEST_CASE(other_methods_get_method_not_allowed) {
    BOOST_TEST(parse("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n").error ==
               HeadError::method_not_allowed);
    BOOST_TEST(parse("connect example.com:443 HTTP/1.1\r\n\r\n").error == HeadError::method_not_allowed);
}

BOOST_AUTO_TEST_CASE(refuses_malformed_heads) {
    const char* cases[] = {
        "CONNECT example.com:443 HTTP/1.1\n\r\n",                  // bare LF
        "CONNECT example.com:443\r\n\r\n",                         // no version
        "CONNECT  example.com:443 HTTP/1.1\r\n\r\n",               // double space
        "CONNECT example.com:443 HTTP/2.0\r\n\r\n",                // version
        "CONNECT example.com:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  // obs-fold
        "CONNECT example.com:443 HTTP/1.1\r\nNo colon\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\nProxy-Authorization: Basic "
        "YTpi\r\n\r\n",
        "\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\n",
    };
    for (const char* c : cases) {
        auto r = parse(c);
        BOOST_TEST((r.error == HeadError::malformed || r.error == HeadError::bad_target), c);
    }
    std::string nul = std::string("CONNECT example.com:443 HTTP/1.1\r\nX: a") + '\0' + "b\r\n\r\n";
    BOOST_TEST(parse(nul).error == HeadError::malformed);
}

BOOST_AUTO_TEST_CASE(unusable_authorization_is_flagged_not_decoded) {
    auto bearer = parse("CONNECT a.com:443 HTTP/1.1\r\nProxy-Authorization: Bearer abc\r\n\r\n");
    BOOST_TEST(bearer.request.has_authorization);
    BOOST_TEST(!bearer.request.basic);
    auto bad64 = parse("CONNECT a.com:443 HTTP/1.1\r\nProxy-Authorization: Basic !!!!\r\n\r\n");
    BOOST_TEST(bad64.request.has_authorization);
    BOOST_TEST(!bad64.request.basic);
    auto nocolon = parse("CONNECT a.com:443 HTTP/1.1\r\nproxy-authorization: basic YWxpY2U=\r\n\r\n");
    BOOST_TEST(!nocolon.request.basic);
}

BOOST_AUTO_TEST_CASE(too_many_headers_are_refused) {
    std::string head = "CONNECT a.com:443 HTTP/1.1\r\n";
    for (int i = 0; i < 100; ++i) head += "X-H" + std::to_string(i) + ": v\r\n";
    head += "\r\n";
    BOOST_TEST(parse(head).error == HeadError::malformed);
}

BOOST_AUTO_TEST_CASE(finds_end_of_head) {
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\r\n\r\nearly") == 24u);
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\r\n") == std::string_view::npos);
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\r\nX: y\r\n\r") == std::string_view::npos);
    // Bare LF line ends still end the head, so that the parser refuses it at once.
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\n\nearly") == 22u);
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\r\n\n") == 23u);
    BOOST_TEST(find_head_end("CONNECT a:1 HTTP/1.1\n\r\n") == 23u);
    const std::string_view bare = "CONNECT a:1 HTTP/1.1\n\n";
    BOOST_TEST(static_cast<int>(parse_connect_head(bare.substr(0, find_head_end(bare))).error) ==
               static_cast<int>(HeadError::malformed));
}

BOOST_AUTO_TEST_CASE(a_head_searched_as_it_arrives_ends_where_a_whole_search_ends_it) {
    // Every string of up to 7 characters of "\r\nX", cut at every point: searching only from
    // where the search of the shorter piece ended finds the same end.
    const char alphabet[] = {'\r', '\n', 'X'};
    for (std::size_t len = 0; len <= 7; ++len) {
        std::size_t count = 1;
        for (std::size_t i = 0; i < len; ++i) count *= 3;
        for (std::size_t n = 0; n < count; ++n) {
            std::string s;
            for (std::size_t i = 0, v = n; i < len; ++i, v /= 3) s += alphabet[v % 3];
            const std::size_t whole = find_head_end(s);
            for (std::size_t cut = 0; cut <= len; ++cut) {
                if (find_head_end(std::string_view(s).substr(0, cut)) != std::string_view::npos) continue;
                BOOST_TEST(find_head_end(s, cut) == whole, "cut " << cut);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
