#include "proxy/config.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>

namespace dingbridge::proxy {

namespace {

NetworkSet parse_networks(const ConfigNode& list, bool allow_default_keyword) {
    NetworkSet set;
    for (const auto& item : list.items()) {
        const std::string text = item.as_string();
        if (allow_default_keyword && text == "default") {
            const NetworkSet defaults = default_deny_networks();
            for (const auto& c : defaults.networks()) set.add(c);
            continue;
        }
        std::string error;
        auto cidr = Cidr::parse(text, &error);
        if (!cidr) item.fail("invalid network '" + text + "': " + error);
        set.add(*cidr);
    }
    return set;
}

Tenant parse_tenant(const ConfigNode& node, std::set<std::string>& user_names,
                    std::map<std::string, std::string>& subjects) {
    Tenant t;
    t.name = node.get("name").as_string();
    if (t.name.empty()) node.get("name").fail("tenant name must not be empty");
    if (auto users = node.find("users")) {
        for (const auto& u : users->items()) {
            TenantUser user;
            user.name = u.get("name").as_string();
            if (user.name.empty() || user.name.find(':') != std::string::npos) {
                u.get("name").fail("user name must be non-empty and must not contain ':'");
            }
            if (!user_names.insert(user.name).second) {
                u.get("name").fail("user '" + user.name + "' is defined twice (user names are unique across tenants)");
            }
            if (u.has("password")) {
                u.get("password")
                    .fail(
                        "plain passwords are not accepted; store `password_hash` from `dingbridge-proxy "
                        "hash-password`");
            }
            const ConfigNode hash_node = u.get("password_hash");
            std::string error;
            auto hash = PasswordHash::parse(hash_node.as_secret(), &error);
            if (!hash) hash_node.fail(error);
            user.hash = *hash;
            u.reject_unknown();
            t.users.push_back(std::move(user));
        }
    }
    t.allow_without_credentials = node.get_bool("allow_without_credentials", false);
    if (auto src = node.find("source_networks")) {
        t.source_networks = parse_networks(*src, false);
    } else {
        t.source_networks.add(*Cidr::parse("0.0.0.0/0"));
        t.source_networks.add(*Cidr::parse("::/0"));
    }
    if (t.allow_without_credentials && !node.has("source_networks")) {
        node.fail("tenant '" + t.name + "' allows clients without credentials, so it must list its source_networks");
    }
    const ConfigNode dests = node.get("destinations");
    for (const auto& d : dests.items()) {
        std::string error;
        auto rule = DestinationRule::parse(d.as_string(), &error);
        if (!rule) d.fail(error);
        t.destinations.push_back(*rule);
    }
    if (t.destinations.empty()) dests.fail("a tenant needs at least one destination");
    if (auto allow = node.find("allow_internal_networks")) t.allow_internal = parse_networks(*allow, false);
    if (auto certs = node.find("client_certificates")) {
        // A subject names one tenant: in two, the first would take the other's clients. (Twice in
        // one tenant is harmless and kept working.)
        for (const auto& c : certs->items()) {
            std::string subject = c.as_string();
            const auto [at, first] = subjects.emplace(subject, t.name);
            if (!first && at->second != t.name)
                c.fail("client certificate subject '" + subject + "' is also listed by tenant '" + at->second +
                       "' (a subject identifies one tenant)");
            t.client_certificates.push_back(std::move(subject));
        }
    }
    if (auto m = node.find("max_tunnels")) t.max_tunnels = static_cast<unsigned>(m->as_int(0, 10'000'000));
    if (auto rate = node.find("connect_rate")) {
        // "20/s", "600/m" or a plain number per second.
        std::string text = rate->as_string();
        double per = 1.0;
        if (text.size() > 2 && text.substr(text.size() - 2) == "/s")
            text.resize(text.size() - 2);
        else if (text.size() > 2 && text.substr(text.size() - 2) == "/m") {
            text.resize(text.size() - 2);
            per = 60.0;
        }
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end == nullptr || *end != '\0' || !(v >= 0) || v > 1e7) {
            rate->fail("expected a rate like 20/s or 600/m");
        }
        t.connect_rate = v / per;
        t.connect_burst = std::max(1.0, t.connect_rate);
        if (auto b = node.find("connect_burst")) t.connect_burst = static_cast<double>(b->as_int(1, 10'000'000));
    }
    node.reject_unknown();
    return t;
}

}  // namespace

FdBudget fd_budget(std::uint64_t fd_limit, unsigned workers, std::size_t listeners, RelayMode relay, bool admin) {
    // Client + upstream socket; with splice also a pipe (2) per direction.
    const std::uint64_t per_tunnel = relay == RelayMode::splice ? 6 : 2;
    // stdio, log files, reads of config files; the admin listener, its thread's event loop and
    // its connections, which the tunnels' share must not count on (a scraper holding them would
    // otherwise fail tunnels already admitted with EMFILE instead of refusing new ones).
    const std::uint64_t process = 24 + (admin ? kMaxAdminConnections + 1 + 4 : 0);
    constexpr std::uint64_t kPerWorkerBase = 8;  // epoll, wakeup fds, resolver sockets
    FdBudget b;
    const std::uint64_t w = std::max(1u, workers);
    // Spare pipes may use at most 1/8 of the limit, and no more than 64 per worker.
    if (relay == RelayMode::splice)
        b.pipe_keep = static_cast<std::size_t>(std::min<std::uint64_t>(64, fd_limit / (16 * w)));
    // auto: a tunnel holds its 2 sockets; bulk directions borrow pipes from a per-worker allowance
    // (and copy when it is used up), which is set aside with the spare pipes: together at most
    // 3/32 of the limit, no more than 32 lent and 16 spare per worker.
    if (relay == RelayMode::automatic) {
        b.pipes_lent = static_cast<std::size_t>(std::min<std::uint64_t>(32, fd_limit / (32 * w)));
        b.pipe_keep = static_cast<std::size_t>(std::min<std::uint64_t>(16, fd_limit / (64 * w)));
    }
    const std::uint64_t reserved = process + w * (kPerWorkerBase + listeners + 2 * (b.pipe_keep + b.pipes_lent));
    b.connections = fd_limit > reserved ? (fd_limit - reserved) / per_tunnel : 0;
    return b;
}

std::uint64_t delayed_reply_limit(const ProxyConfig& cfg) {
    return cfg.max_connections == 0 ? 4096 : std::max<std::uint64_t>(1, cfg.max_connections / 8);
}

ProxyConfig load_proxy_config(const std::string& path, std::shared_ptr<CredentialCache> credential_cache) {
    return parse_proxy_config(ConfigNode::load_file(path), std::move(credential_cache));
}

namespace {

void parse_listener_tls(const ConfigNode& tls, ListenerConfig& lc) {
    TlsSettings t;
    t.certificate = tls.get("certificate").as_string();
    t.key = tls.get("key").as_string();
    t.client_ca = tls.get_string("client_ca", "");
    const std::string mode = tls.get_string("client_certificate", t.client_ca.empty() ? "none" : "require");
    if (mode != "require" && mode != "optional" && mode != "none") {
        tls.get("client_certificate").fail("must be require, optional or none");
    }
    if (mode != "none" && t.client_ca.empty()) tls.get("client_certificate").fail("needs client_ca");
    if (mode == "none") t.client_ca.clear();
    t.require_client_certificate = mode == "require";
    try {
        lc.tls_context = make_server_context(t);
    } catch (const std::exception& e) {
        tls.fail(e.what());
    }
    lc.tls = t;
    tls.reject_unknown();
}

ListenerConfig parse_listener(const ConfigNode& l) {
    ListenerConfig lc;
    const ConfigNode addr = l.is_map() ? l.get("address") : l;
    lc.address = addr.as_string();
    auto hp = split_host_port(lc.address, true);
    if (!hp || !IpAddress::parse(hp->host)) {
        addr.fail("listener address must be ip:port or [ipv6]:port, got '" + lc.address + "'");
    }
    lc.host = hp->host;
    lc.port = hp->port;
    if (l.is_map()) {
        if (auto tls = l.find("tls")) parse_listener_tls(*tls, lc);
        lc.require_tls = l.get_bool("require_tls", false);
        if (lc.require_tls && lc.tls)
            l.get("require_tls").fail("require_tls applies to plain listeners; this one has tls");
        lc.tenant = l.get_string("tenant", "");
        l.reject_unknown();
    }
    return lc;
}

void parse_workers_and_relay(const ConfigNode& root, ProxyConfig& cfg) {
    if (auto w = root.find("workers")) {
        if (w->as_string() == "auto") {
            cfg.workers = std::max(1u, std::thread::hardware_concurrency());
        } else {
            cfg.workers = static_cast<unsigned>(w->as_int(1, 256));
        }
    } else {
        cfg.workers = std::max(1u, std::thread::hardware_concurrency());
    }
    cfg.realm = root.get_string("realm", cfg.realm);
    if (auto relay = root.find("relay")) {
        cfg.relay = relay->as_choice<RelayMode>({{"auto", RelayMode::automatic},
                                                 {"copy", RelayMode::copy},
                                                 {"splice", RelayMode::splice},
                                                 {"buffered", RelayMode::buffered}});
    }
    cfg.relay_send_thread = root.get_bool("relay_send_thread", cfg.relay_send_thread);
    for (char c : cfg.realm) {
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
            root.get("realm").fail("realm must not contain quotes, backslashes or control characters");
    }
}

void parse_limits(const ConfigNode& root, ProxyConfig& cfg) {
    if (auto limits = root.find("limits")) {
        cfg.max_head_bytes = limits->get_size("max_head_bytes", cfg.max_head_bytes);
        if (cfg.max_head_bytes < 512 || cfg.max_head_bytes > 1024 * 1024) {
            limits->get("max_head_bytes").fail("must be between 512 and 1MiB");
        }
        cfg.header_timeout = limits->get_duration("header_timeout", cfg.header_timeout);
        cfg.dns_timeout = limits->get_duration("dns_timeout", cfg.dns_timeout);
        cfg.connect_timeout = limits->get_duration("connect_timeout", cfg.connect_timeout);
        cfg.idle_timeout = limits->get_duration("idle_timeout", cfg.idle_timeout);
        cfg.buffer_size = limits->get_size("buffer_size", cfg.buffer_size);
        if (cfg.buffer_size < 4096 || cfg.buffer_size > 64 * 1024 * 1024) {
            limits->get("buffer_size").fail("must be between 4KiB and 64MiB");
        }
        cfg.tls_handshake_timeout = limits->get_duration("tls_handshake_timeout", cfg.tls_handshake_timeout);
        cfg.shutdown_grace = limits->get_duration("shutdown_grace", cfg.shutdown_grace);
        if (auto m = limits->find("max_connections"))
            cfg.max_connections = static_cast<std::uint64_t>(m->as_int(1, 10'000'000));
        if (auto m = limits->find("max_pending_per_source"))
            cfg.max_pending_per_source = static_cast<std::uint64_t>(m->as_int(0, 10'000'000));
        for (const char* key :
             {"header_timeout", "dns_timeout", "connect_timeout", "idle_timeout", "tls_handshake_timeout"}) {
            if (auto n = limits->find(key); n && n->as_duration().count() == 0) n->fail("must be greater than zero");
        }
        limits->reject_unknown();
    }
}

void parse_outgoing(const ConfigNode& root, ProxyConfig& cfg) {
    if (auto out = root.find("outgoing")) {
        if (auto b = out->find("bind_address")) {
            const std::vector<ConfigNode> items = b->is_sequence() ? b->items() : std::vector<ConfigNode>{*b};
            for (const auto& item : items) {
                if (item.as_string().empty()) continue;
                auto ip = IpAddress::parse(item.as_string());
                if (!ip) item.fail("bind_address must be an IP address of this host, got '" + item.as_string() + "'");
                auto& slot = ip->is_v4() ? cfg.bind_v4 : cfg.bind_v6;
                if (slot) item.fail("only one bind address per address family");
                slot = *ip;
            }
        }
        out->reject_unknown();
    }
}

void parse_auth_and_admin(const ConfigNode& root, ProxyConfig& cfg) {
    if (auto af = root.find("auth_failures")) {
        if (auto m = af->find("max_failures"))
            cfg.auth_throttle.max_failures = static_cast<unsigned>(m->as_int(0, 1'000'000));
        if (auto m = af->find("max_failures_per_user")) {
            cfg.auth_throttle.max_failures_per_user = static_cast<unsigned>(m->as_int(0, 1'000'000));
        }
        cfg.auth_throttle.window = af->get_duration("window", cfg.auth_throttle.window);
        cfg.auth_throttle.cooldown = af->get_duration("cooldown", cfg.auth_throttle.cooldown);
        if (auto d = af->find("reply_delay")) {
            cfg.throttled_reply_delay = d->as_duration();
            if (cfg.throttled_reply_delay > std::chrono::seconds(60))
                d->fail("reply_delay must be at most 60s (0 answers at once)");
        }
        af->reject_unknown();
    }
    if (auto pc = root.find("password_checks")) {
        if (auto m = pc->find("threads")) cfg.verify_threads = static_cast<unsigned>(m->as_int(0, 64));
        if (auto m = pc->find("queue")) cfg.verify_queue = static_cast<std::size_t>(m->as_int(1, 100'000));
        pc->reject_unknown();
    }
    if (cfg.verify_threads == 0) cfg.verify_threads = std::max(1u, std::thread::hardware_concurrency() / 2);
    if (auto admin = root.find("admin")) {
        cfg.admin_address = admin->get_string("address", "");
        if (!cfg.admin_address.empty()) {
            auto hp = split_host_port(cfg.admin_address, true);
            if (!hp || !IpAddress::parse(hp->host)) admin->get("address").fail("must be ip:port or [ipv6]:port");
        }
        admin->reject_unknown();
    }
}

std::vector<Tenant> parse_tenants(const ConfigNode& root, const ConfigNode& listeners, const ProxyConfig& cfg) {
    std::vector<Tenant> tenants;
    std::set<std::string> tenant_names, user_names;
    std::map<std::string, std::string> subjects;  // client certificate subject -> its tenant
    const ConfigNode tnode = root.get("tenants");
    for (const auto& t : tnode.items()) {
        tenants.push_back(parse_tenant(t, user_names, subjects));
        if (!tenant_names.insert(tenants.back().name).second) t.get("name").fail("duplicate tenant name");
    }
    if (tenants.empty()) tnode.fail("at least one tenant is required");
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        const auto& lc = cfg.listeners[i];
        if (!lc.tenant.empty() && tenant_names.count(lc.tenant) == 0) {
            listeners.items()[i].get("tenant").fail("no tenant named '" + lc.tenant + "'");
        }
    }
    const auto tenant_items = tnode.items();
    for (std::size_t i = 0; i < tenants.size(); ++i) {
        const Tenant& t = tenants[i];
        bool dedicated = false;
        for (const auto& lc : cfg.listeners) dedicated = dedicated || lc.tenant == t.name;
        if (t.users.empty() && !t.allow_without_credentials && t.client_certificates.empty() && !dedicated) {
            tenant_items[i].fail("tenant '" + t.name +
                                 "' cannot be reached: give it users, client_certificates, "
                                 "allow_without_credentials or a dedicated listener");
        }
    }
    return tenants;
}

void parse_logs(const ConfigNode& root, ProxyConfig& cfg) {
    if (auto log = root.find("log")) {
        cfg.log.level = log->get_string("level", cfg.log.level);
        if (!valid_log_level(cfg.log.level))
            log->get("level").fail("unknown level (trace, debug, info, warn, error, critical, off)");
        cfg.log.format = log->get_string("format", cfg.log.format);
        if (cfg.log.format != "text" && cfg.log.format != "json") log->get("format").fail("must be text or json");
        cfg.log.file = log->get_string("file", "");
        log->reject_unknown();
    }
    if (auto access = root.find("access_log")) {
        cfg.access_log_format = access->get_string("format", cfg.access_log_format);
        if (cfg.access_log_format != "text" && cfg.access_log_format != "json")
            access->get("format").fail("must be text or json");
        cfg.access_log_file = access->get_string("file", "");
        access->reject_unknown();
    }
}

void apply_fd_budget(const ConfigNode& root, ProxyConfig& cfg) {
    // The descriptor limit the proxy will run with (it raises its soft limit to the hard one).
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) {
        const auto limit = static_cast<std::uint64_t>(rl.rlim_max);
        FdBudget budget = fd_budget(limit, cfg.workers, cfg.listeners.size(), cfg.relay, !cfg.admin_address.empty());
        if (budget.connections == 0 && !cfg.admin_address.empty()) {
            // Too small to set the admin port's connections aside: runs as before, with a warning.
            budget = fd_budget(limit, cfg.workers, cfg.listeners.size(), cfg.relay, false);
            cfg.fd_budget_without_admin = true;
        }
        if (budget.connections == 0) {
            root.fail("the descriptor limit (ulimit -n " + std::to_string(limit) + ") is too small for " +
                      std::to_string(cfg.workers) + " worker(s); raise it" +
                      (cfg.workers > 1 ? " or lower workers" : ""));
        }
        cfg.fd_budget_connections = budget.connections;
        cfg.pipe_pool_keep = budget.pipe_keep;
        cfg.pipes_lent = budget.pipes_lent;
        // Unset: stay within the descriptors, so that an exhausted limit refuses new clients
        // cleanly (503) instead of failing pipes or connects of tunnels already relaying.
        if (cfg.max_connections == 0) cfg.max_connections = budget.connections;
    }
}

}  // namespace

ProxyConfig parse_proxy_config(const ConfigNode& root, std::shared_ptr<CredentialCache> credential_cache) {
    ProxyConfig cfg;
    const ConfigNode listeners = root.get("listeners");
    for (const auto& l : listeners.items()) cfg.listeners.push_back(parse_listener(l));
    if (cfg.listeners.empty()) listeners.fail("at least one listener is required");
    parse_workers_and_relay(root, cfg);
    parse_limits(root, cfg);
    parse_outgoing(root, cfg);
    parse_auth_and_admin(root, cfg);
    NetworkSet deny = default_deny_networks();
    if (auto d = root.find("deny_networks")) deny = parse_networks(*d, true);
    std::vector<Tenant> tenants = parse_tenants(root, listeners, cfg);
    parse_logs(root, cfg);
    root.reject_unknown();
    apply_fd_budget(root, cfg);
    const auto limits = root.find("limits");
    if (!limits || !limits->find("max_pending_per_source")) {
        const std::uint64_t all = cfg.max_connections == 0 ? 4096 : cfg.max_connections;
        cfg.max_pending_per_source = std::clamp<std::uint64_t>(all / 4, 16, 128);
    }
    if (!credential_cache) credential_cache = std::make_shared<CredentialCache>();
    cfg.policy = std::make_shared<const Policy>(std::move(tenants), std::move(deny), std::move(credential_cache));
    return cfg;
}

}  // namespace dingbridge::proxy
