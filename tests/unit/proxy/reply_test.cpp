#include "proxy/reply.h"

#include <boost/test/unit_test.hpp>

#include "proxy/upstream_connector.h"

using namespace dingbridge::proxy;

BOOST_AUTO_TEST_SUITE(reply)

BOOST_AUTO_TEST_CASE(error_replies_carry_the_headers_their_status_needs) {
    const std::string r407 = error_reply(407, "proxy authentication required", "corp", 0);
    BOOST_TEST(r407.rfind("HTTP/1.1 407 Proxy Authentication Required\r\n", 0) == 0u);
    BOOST_TEST(r407.find("Proxy-Authenticate: Basic realm=\"corp\"\r\n") != std::string::npos);
    BOOST_TEST(r407.find("Retry-After") == std::string::npos);
    const std::string r429 = error_reply(429, "too many failed authentications", "corp", 7);
    BOOST_TEST(r429.find("Retry-After: 7\r\n") != std::string::npos);
    BOOST_TEST(r429.find("Proxy-Authenticate") == std::string::npos);
    BOOST_TEST(error_reply(405, "only CONNECT is supported", "corp", 0).find("Allow: CONNECT\r\n") !=
               std::string::npos);
    const std::string r503 = error_reply(503, "busy", "corp", 1);
    const std::string body = "busy\n";
    BOOST_TEST(r503.find("Content-Length: 5\r\nConnection: close\r\n\r\n" + body) != std::string::npos);
    BOOST_TEST(r503.size() >= body.size());
    BOOST_TEST(r503.compare(r503.size() - body.size(), body.size(), body) == 0);
}

BOOST_AUTO_TEST_CASE(access_log_lines_stay_one_line_whatever_the_user_sent) {
    AccessRecord r;
    r.time = "2026-01-01T00:00:00.000Z";
    r.user = "evil\nuser=\"x";
    r.source = "127.0.0.1:5000";
    r.destination = "api.dingtalk.com:443";
    r.status = 407;
    r.reason = "invalid credentials";
    const std::string text = access_log_line(r, false);
    BOOST_TEST(text.find('\n') == std::string::npos);
    BOOST_TEST(text.find("tenant=- ") != std::string::npos);
    BOOST_TEST(text.find("ip=- status=407") != std::string::npos);
    const std::string json = access_log_line(r, true);
    BOOST_TEST(json.find('\n') == std::string::npos);
    BOOST_TEST(json.find(R"("user":"evil\nuser=\"x")") != std::string::npos);
    BOOST_TEST(json.find(R"("tls":false)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_text_log_value_never_holds_a_field_separator) {
    BOOST_TEST(text_log_value("") == "-");
    BOOST_TEST(text_log_value("-") == "\\x2d");
    BOOST_TEST(text_log_value("agent-1.x@corp") == "agent-1.x@corp");
    BOOST_TEST(text_log_value("a b=c\"d\\e\tf") == "a\\x20b\\x3dc\\x22d\\x5ce\\x09f");
    BOOST_TEST(text_log_value("\xe9\x92\x89") == "\\xe9\\x92\\x89");  // non-ASCII: no Unicode space either
    AccessRecord r;
    r.user = "x status=200 src=1.2.3.4:5";
    r.status = 407;
    const std::string text = access_log_line(r, false);
    BOOST_TEST(text.find("status=") == text.rfind("status="));
    BOOST_TEST(text.find("src=") == text.rfind("src="));
}

BOOST_AUTO_TEST_CASE(json_access_log_lines_stay_utf8_whatever_the_user_sent) {
    BOOST_TEST(valid_utf8("agent \xe5\xbc\xa0\xe4\xb8\x89 \xf0\x9f\x94\x91") ==
               "agent \xe5\xbc\xa0\xe4\xb8\x89 \xf0\x9f\x94\x91");
    const std::string fffd = "\xef\xbf\xbd";
    BOOST_TEST(valid_utf8("a\xff") == "a" + fffd);
    BOOST_TEST(valid_utf8("\xc0\xaf") == fffd + fffd);                        // overlong '/'
    BOOST_TEST(valid_utf8("\xed\xa0\x80") == fffd + fffd + fffd);             // a surrogate
    BOOST_TEST(valid_utf8("\xe5\xbc") == fffd + fffd);                        // cut short
    BOOST_TEST(valid_utf8("\xf4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // above U+10FFFF
    AccessRecord r;
    r.user = "al\xffice";
    BOOST_TEST(access_log_line(r, true).find("\"user\":\"al" + fffd + "ice\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(unreachable_upstreams_get_distinct_statuses_and_policy_refusals_count_as_denials) {
    using F = UpstreamConnector::Failure;
    struct Want {
        F failure;
        int status;
        bool denial;
    };
    for (const Want& w :
         {Want{F::name_not_resolved, 502, false}, Want{F::lookup_timeout, 504, false}, Want{F::loop, 403, true},
          Want{F::denied_network, 403, true}, Want{F::no_usable_address, 502, false},
          Want{F::connect_timeout, 504, false}, Want{F::connect_failed, 502, false}}) {
        const ConnectFailureReply r = connect_failure_reply(w.failure);
        BOOST_TEST(r.status == w.status);
        BOOST_TEST(r.denial.has_value() == w.denial);
        BOOST_TEST(std::string(r.reason).size() > 0u);
    }
    BOOST_TEST((*connect_failure_reply(F::loop).denial == Denial::loop));
    BOOST_TEST((*connect_failure_reply(F::denied_network).denial == Denial::network));
}

BOOST_AUTO_TEST_SUITE_END()
