#include "shared/enum_table.h"

#include <boost/test/unit_test.hpp>
#include <string>

#include "proxy/close_reason.h"
#include "proxy/metrics.h"
#include "proxy/upstream_connector.h"

using namespace dingbridge;

namespace {
enum class Colour { red, green, blue };
constexpr auto kColourNames = enum_table<Colour::blue>({"red", "green", "blue"});
}  // namespace

BOOST_AUTO_TEST_SUITE(enum_table)

BOOST_AUTO_TEST_CASE(entries_follow_declaration_order_and_a_value_outside_gets_the_fallback) {
    static_assert(kColourNames.get(Colour::green, "?")[0] == 'g', "usable at compile time");
    BOOST_TEST(std::string(kColourNames.get(Colour::red, "?")) == "red");
    BOOST_TEST(std::string(kColourNames.get(Colour::blue, "?")) == "blue");
    BOOST_TEST(std::string(kColourNames.get(static_cast<Colour>(3), "?")) == "?");
    BOOST_TEST(std::string(kColourNames.get(static_cast<Colour>(-1), "?")) == "?");
}

// The names are what operators see: metric labels, access-log reasons, reply statuses.
BOOST_AUTO_TEST_CASE(proxy_denials_close_reasons_and_connect_replies_keep_their_texts) {
    using proxy::CloseReason;
    using proxy::Denial;
    BOOST_TEST(std::string(proxy::denial_name(Denial::malformed)) == "malformed");
    BOOST_TEST(std::string(proxy::denial_name(Denial::max_connections)) == "max_connections");
    BOOST_TEST(std::string(proxy::denial_name(Denial::auth_busy)) == "auth_busy");
    BOOST_TEST(std::string(proxy::denial_name(Denial::count_)) == "unknown");
    BOOST_TEST(std::string(proxy::close_reason_text(CloseReason::completed)) == "completed");
    BOOST_TEST(std::string(proxy::close_reason_text(CloseReason::no_pipe)) == "cannot create pipe");
    BOOST_TEST(std::string(proxy::close_reason_text(CloseReason::reply_sent)) == "error reply sent");
    using F = proxy::UpstreamConnector::Failure;
    const auto loop = proxy::connect_failure_reply(F::loop);
    BOOST_TEST((loop.denial == Denial::loop));
    BOOST_TEST(loop.status == 403);
    BOOST_TEST(std::string(loop.reason) == "destination is this proxy");
    const auto timeout = proxy::connect_failure_reply(F::lookup_timeout);
    BOOST_TEST(!timeout.denial.has_value());
    BOOST_TEST(timeout.status == 504);
    const auto failed = proxy::connect_failure_reply(F::connect_failed);
    BOOST_TEST(failed.status == 502);
    BOOST_TEST(std::string(failed.reason) == "upstream connection failed");
}

BOOST_AUTO_TEST_SUITE_END()
