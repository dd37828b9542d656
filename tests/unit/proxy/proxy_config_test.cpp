#include <boost/test/unit_test.hpp>

#include "proxy/config.h"

using namespace dingbridge;
using namespace dingbridge::proxy;

namespace {

// A real hash of "pw" with cheap parameters, so tests stay fast.
const std::string& hash_of_pw() {
    static const std::string h = PasswordHash::create("pw", ScryptParams{10, 8, 1}).to_string();
    return h;
}

std::string base_config(const std::string& extra_tenant_keys = "", const std::string& top = "") {
    return "listeners:\n  - address: \"127.0.0.1:3128\"\nworkers: 2\n" + top +
           "tenants:\n  - name: agent\n    users:\n      - name: alice\n        password_hash: \"" + hash_of_pw() +
           "\"\n    destinations: [\"*.dingtalk.com:443\"]\n" + extra_tenant_keys;
}

ConfigError load_error(const std::string& text) {
    try {
        parse_proxy_config(ConfigNode::load_string(text, "proxy.yaml"));
    } catch (const ConfigError& e) {
        return e;
    }
    BOOST_FAIL("configuration was accepted:\n" + text);
    throw;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(proxy_config)

BOOST_AUTO_TEST_CASE(minimal_config_loads_with_defaults) {
    auto cfg = parse_proxy_config(ConfigNode::load_string(base_config(), "proxy.yaml"));
    BOOST_TEST(cfg.listeners.size() == 1u);
    BOOST_TEST(cfg.listeners[0].port == 3128);
    BOOST_TEST(cfg.workers == 2u);
    BOOST_TEST(cfg.policy->tenants().size() == 1u);
    BOOST_TEST(cfg.header_timeout.count() == 10000);
    BOOST_TEST(!cfg.policy->deny_networks().empty());
    BOOST_TEST(cfg.max_connections >= 64u);  // derived from the descriptor limit when unset
}

BOOST_AUTO_TEST_CASE(plain_password_is_refused_with_a_hint) {
    auto e = load_error(
        "listeners: [\"127.0.0.1:3128\"]\ntenants:\n  - name: a\n    users:\n      - name: u\n"
        "        password: hunter2\n    destinations: [\"*:443\"]\n");
    BOOST_TEST(e.line() == 6);
    BOOST_TEST(std::string(e.what()).find("hash-password") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("hunter2") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(errors_point_at_the_offending_line) {
    auto bad_rule =
        load_error(base_config("", "").replace(base_config().find("*.dingtalk.com:443"), 18, "*.dingtalk.com"));
    BOOST_TEST(bad_rule.line() == 9);
    BOOST_TEST(bad_rule.key() == "tenants[0].destinations[0]");

    auto bad_network = load_error(base_config("    source_networks: [10.0.0.1/8]\n"));
    BOOST_TEST(bad_network.line() == 10);
    BOOST_TEST(std::string(bad_network.what()).find("bits set") != std::string::npos);

    auto bad_duration = load_error(base_config("", "limits:\n  idle_timeout: forever\n"));
    BOOST_TEST(bad_duration.line() == 5);
    BOOST_TEST(bad_duration.key() == "limits.idle_timeout");

    auto typo = load_error(base_config("", "limts:\n  idle_timeout: 1h\n"));
    BOOST_TEST(typo.line() == 4);
    BOOST_TEST(std::string(typo.what()).find("unknown key 'limts'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(throttled_reply_delay_defaults_bounds_and_limit) {
    auto cfg = parse_proxy_config(ConfigNode::load_string(base_config(), "proxy.yaml"));
    BOOST_TEST(cfg.throttled_reply_delay.count() == 2000);
    cfg = parse_proxy_config(ConfigNode::load_string(
        base_config("", "limits:\n  max_connections: 100\nauth_failures:\n  reply_delay: 0s\n"), "proxy.yaml"));
    BOOST_TEST(cfg.throttled_reply_delay.count() == 0);
    BOOST_TEST(delayed_reply_limit(cfg) == 12u);  // an eighth of max_connections
    cfg.max_connections = 3;
    BOOST_TEST(delayed_reply_limit(cfg) == 1u);
    cfg.max_connections = 0;  // unlimited
    BOOST_TEST(delayed_reply_limit(cfg) == 4096u);

    auto too_long = load_error(base_config("", "auth_failures:\n  reply_delay: 5m\n"));
    BOOST_TEST(too_long.line() == 5);
    BOOST_TEST(std::string(too_long.what()).find("at most 60s") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(pending_per_source_defaults_to_a_quarter_of_max_connections) {
    auto at = [](const std::string& limits) {
        return parse_proxy_config(ConfigNode::load_string(base_config("", limits), "proxy.yaml"))
            .max_pending_per_source;
    };
    BOOST_TEST(at("limits:\n  max_connections: 400\n") == 100u);
    BOOST_TEST(at("limits:\n  max_connections: 20\n") == 16u);                               // at least 16
    BOOST_TEST(at("limits:\n  max_connections: 100000\n") == 128u);                          // at most 128
    BOOST_TEST(at("limits:\n  max_connections: 400\n  max_pending_per_source: 0\n") == 0u);  // no cap
    BOOST_TEST(at("limits:\n  max_pending_per_source: 1000\n") == 1000u);
    auto negative = load_error(base_config("", "limits:\n  max_pending_per_source: -1\n"));
    BOOST_TEST(negative.line() == 5);
}

BOOST_AUTO_TEST_CASE(credentialless_tenant_must_name_its_networks) {
    auto e = load_error(
        "listeners: [\"127.0.0.1:3128\"]\ntenants:\n  - name: java\n    allow_without_credentials: true\n"
        "    destinations: [\"*:443\"]\n");
    BOOST_TEST(std::string(e.what()).find("source_networks") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(duplicate_users_and_tenants_are_refused) {
    const std::string dup = base_config() +
                            "  - name: other\n    users:\n      - name: alice\n        password_hash: \"" +
                            hash_of_pw() + "\"\n    destinations: [\"*:443\"]\n";
    BOOST_TEST(std::string(load_error(dup).what()).find("defined twice") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_client_certificate_subject_names_one_tenant) {
    // Before: accepted, and the first tenant silently took the second one's clients.
    const std::string twice = base_config("    client_certificates: [\"CN=agent-a\"]\n") +
                              "  - name: other\n    client_certificates: [\"CN=b\", \"CN=agent-a\"]\n"
                              "    destinations: [\"*:443\"]\n";
    const auto e = load_error(twice);
    BOOST_TEST(std::string(e.what()).find("client certificate subject 'CN=agent-a' is also listed by tenant "
                                          "'agent'") != std::string::npos);
    BOOST_TEST(e.line() == 12);  // the second listing
    const std::string apart = base_config("    client_certificates: [\"CN=agent-a\"]\n") +
                              "  - name: other\n    client_certificates: [\"CN=b\"]\n    destinations: [\"*:443\"]\n";
    BOOST_TEST(parse_proxy_config(ConfigNode::load_string(apart, "proxy.yaml")).policy->tenants().size() == 2u);
    // Twice in one tenant names that tenant all the same: accepted, as it always was.
    const std::string repeated = base_config("    client_certificates: [\"CN=agent-a\", \"CN=agent-a\"]\n");
    BOOST_TEST(parse_proxy_config(ConfigNode::load_string(repeated, "proxy.yaml")).policy->tenants().size() == 1u);
}

BOOST_AUTO_TEST_CASE(deny_networks_can_extend_the_defaults) {
    auto cfg = parse_proxy_config(
        ConfigNode::load_string(base_config("", "deny_networks: [default, 203.0.113.0/24, 198.51.100.7]\n"), "p.yaml"));
    Tenant t;
    BOOST_TEST(!cfg.policy->address_allowed(t, *IpAddress::parse("127.0.0.1")));
    BOOST_TEST(!cfg.policy->address_allowed(t, *IpAddress::parse("198.51.100.7")));
}

BOOST_AUTO_TEST_CASE(bad_listener_is_refused) {
    auto e = load_error("listeners: [\"localhost:3128\"]\ntenants: []\n");
    BOOST_TEST(std::string(e.what()).find("listener address") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(descriptor_budget_fits_busy_spliced_tunnels_and_spare_pipes) {
    for (std::uint64_t limit : {64ull, 96ull, 256ull, 1024ull, 65536ull, 1048576ull}) {
        for (unsigned workers : {1u, 2u, 8u}) {
            const FdBudget b = fd_budget(limit, workers, 2, RelayMode::splice, false);
            // Every tunnel backed up both ways (6 descriptors) plus every worker's spare pipes
            // stay within the limit, with room for the process's own descriptors.
            BOOST_TEST(b.connections * 6 + workers * 2 * b.pipe_keep + 24 <= limit);
            BOOST_TEST(b.pipe_keep <= 64u);
        }
    }
    BOOST_TEST(fd_budget(65536, 2, 1, RelayMode::splice, false).connections > 10000u);
    // No floor above the limit: a tiny limit carries few tunnels, or none (a config error).
    BOOST_TEST(fd_budget(96, 1, 1, RelayMode::splice, false).connections < 16u);
    BOOST_TEST(fd_budget(96, 1, 1, RelayMode::splice, false).connections > 0u);
    BOOST_TEST(fd_budget(20, 1, 1, RelayMode::splice, false).connections == 0u);
}

BOOST_AUTO_TEST_CASE(descriptor_budget_of_copy_relay_counts_two_sockets_per_tunnel_and_no_pipes) {
    for (RelayMode mode : {RelayMode::copy, RelayMode::buffered}) {
        for (std::uint64_t limit : {64ull, 96ull, 1024ull, 65536ull}) {
            const FdBudget b = fd_budget(limit, 2, 2, mode, false);
            BOOST_TEST(b.pipe_keep == 0u);
            BOOST_TEST(b.connections * 2 + 24 <= limit);
        }
        // Three times the spliced figure, less the spare pipes' share.
        BOOST_TEST(fd_budget(65536, 2, 1, mode, false).connections > 30000u);
        BOOST_TEST(fd_budget(20, 1, 1, mode, false).connections == 0u);
    }
}

BOOST_AUTO_TEST_CASE(descriptor_budget_of_auto_relay_sets_the_lent_and_spare_pipes_aside) {
    for (std::uint64_t limit : {64ull, 96ull, 256ull, 1024ull, 65536ull, 1048576ull}) {
        for (unsigned workers : {1u, 2u, 8u}) {
            const FdBudget b = fd_budget(limit, workers, 2, RelayMode::automatic, false);
            // Every tunnel's 2 sockets plus every worker's pipes, lent and spare, within the limit.
            BOOST_TEST(b.connections * 2 + workers * 2 * (b.pipe_keep + b.pipes_lent) + 24 <= limit);
            BOOST_TEST(b.pipes_lent <= 32u);
            BOOST_TEST(b.pipe_keep <= 16u);
        }
    }
    // Near copy's figure where descriptors are plentiful; a pipe or two per worker where they are not.
    BOOST_TEST(fd_budget(65536, 2, 1, RelayMode::automatic, false).connections > 32000u);
    BOOST_TEST(fd_budget(65536, 2, 1, RelayMode::automatic, false).pipes_lent == 32u);
    BOOST_TEST(fd_budget(96, 1, 1, RelayMode::automatic, false).pipes_lent == 3u);
    BOOST_TEST(fd_budget(96, 1, 1, RelayMode::automatic, false).connections > 20u);
    BOOST_TEST(fd_budget(20, 1, 1, RelayMode::automatic, false).connections == 0u);
    // Copy and splice lend no pipes beyond what their budgets count.
    BOOST_TEST(fd_budget(65536, 2, 1, RelayMode::copy, false).pipes_lent == 0u);
    BOOST_TEST(fd_budget(65536, 2, 1, RelayMode::splice, false).pipes_lent == 0u);
}

BOOST_AUTO_TEST_CASE(descriptor_budget_leaves_room_for_the_admin_ports_connections) {
    // The admin port keeps up to 64 connections (65 for a moment): a budget that counted on
    // them failed admitted tunnels with EMFILE (502) once a scraper held them.
    for (RelayMode mode : {RelayMode::copy, RelayMode::splice, RelayMode::automatic}) {
        for (std::uint64_t limit : {200ull, 1024ull, 65536ull}) {
            const FdBudget with = fd_budget(limit, 1, 1, mode, true);
            const FdBudget without = fd_budget(limit, 1, 1, mode, false);
            const std::uint64_t per = mode == RelayMode::splice ? 6 : 2;
            BOOST_TEST(with.connections * per + 2 * (with.pipe_keep + with.pipes_lent) + 24 + kMaxAdminConnections +
                           1 <=
                       limit);
            BOOST_TEST(with.connections < without.connections);
        }
    }
}

BOOST_AUTO_TEST_CASE(relay_mode_is_auto_unless_configured) {
    auto parse = [](const std::string& top) {
        return parse_proxy_config(ConfigNode::load_string(base_config("", top), "proxy.yaml"));
    };
    BOOST_TEST((parse("").relay == RelayMode::automatic));
    BOOST_TEST((parse("relay: auto\n").relay == RelayMode::automatic));
    BOOST_TEST((parse("relay: copy\n").relay == RelayMode::copy));
    BOOST_TEST((parse("relay: splice\n").relay == RelayMode::splice));
    BOOST_TEST((parse("relay: buffered\n").relay == RelayMode::buffered));
    auto e = load_error(base_config("", "relay: zerocopy\n"));
    BOOST_TEST(std::string(e.what()).find("must be auto, copy, splice or buffered") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
