// dingbridge-proxy: command line, configuration, signals; the work happens in Server/Worker/Tunnel.

#include <event2/thread.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/server.h"
#include "shared/log.h"
#include "shared/password.h"

using namespace dingbridge;
using namespace dingbridge::proxy;

namespace {

std::string read_password_from_terminal_or_stdin() {
    if (!isatty(STDIN_FILENO)) {
        std::string line;
        std::getline(std::cin, line);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
    }
    termios old{};
    tcgetattr(STDIN_FILENO, &old);
    termios silent = old;
    silent.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &silent);
    std::string first, second;
    std::cerr << "Password: " << std::flush;
    std::getline(std::cin, first);
    std::cerr << "\nRepeat password: " << std::flush;
    std::getline(std::cin, second);
    std::cerr << "\n";
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    if (first != second) throw std::runtime_error("passwords do not match");
    return first;
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

// 0 when `ip` is an address of this host (a socket can bind to it), else the errno.
int bind_error(const IpAddress& ip) {
    const SocketAddress sa = SocketAddress::of(ip, 0);
    const int fd = socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    const int rc = bind(fd, sa.get(), sa.length);  // port 0: nothing is taken
    const int err = rc == 0 ? 0 : errno;
    ::close(fd);
    return err;
}

// The addresses (listeners, admin, egress) the configuration names that this host does not have.
std::vector<std::string> address_problems(const ProxyConfig& cfg) {
    std::vector<std::string> problems;
    auto check = [&](const std::string& what, const std::string& text, const std::optional<IpAddress>& ip) {
        if (!ip) return;
        if (const int err = bind_error(*ip)) {
            problems.push_back(what + " " + text + " is not usable on this host: " + std::strerror(err));
        }
    };
    for (const auto& l : cfg.listeners) check("listen address", l.address, IpAddress::parse(l.host));
    if (!cfg.admin_address.empty()) {
        if (auto hp = split_host_port(cfg.admin_address, true))
            check("admin.address", cfg.admin_address, IpAddress::parse(hp->host));
    }
    if (cfg.bind_v4) check("outgoing.bind_address", cfg.bind_v4->to_string(), cfg.bind_v4);
    if (cfg.bind_v6) check("outgoing.bind_address", cfg.bind_v6->to_string(), cfg.bind_v6);
    return problems;
}

// What the configuration names that this host does not have: addresses and the directories of
// the log files.
std::vector<std::string> host_problems(const ProxyConfig& cfg) {
    std::vector<std::string> problems = address_problems(cfg);
    auto log_file = [&](const std::string& what, const std::string& file) {
        if (const std::string problem = log_directory_problem(file); !problem.empty())
            problems.push_back(what + " " + file + ": " + problem);
    };
    log_file("log.file", cfg.log.file);
    log_file("access_log.file", cfg.access_log_file);
    return problems;
}

// Warnings about a configuration that works but exposes passwords or may fail under load.
void warn_about_risky_settings(const ProxyConfig& cfg) {
    const auto& policy = *cfg.policy;
    for (const auto& l : cfg.listeners) {
        const IpAddress ip = *IpAddress::parse(l.host);
        const bool loopback = ip.is_v4() ? (ip.v4_value() >> 24) == 127 : ip == *IpAddress::parse("::1");
        bool has_passwords = false;
        for (const auto& t : policy.tenants()) has_passwords = has_passwords || !t.users.empty();
        if (!loopback && has_passwords && !l.tls && !l.require_tls) {
            spdlog::warn(
                "listener {} is plain TCP and not loopback: proxy passwords cross the network in clear "
                "(add tls, or require_tls to refuse credentials on it)",
                l.address);
        }
    }

    // Unknown user names are checked with the costliest parameters in use (Policy::decoy_params):
    // a user whose hash is cheaper answers faster than an unknown name, which tells that it exists.
    const ScryptParams& decoy = policy.decoy_params();
    for (const auto& t : policy.tenants()) {
        for (const auto& u : t.users) {
            const ScryptParams& p = u.hash.params();
            if (p.log2_n < ScryptParams{}.log2_n) {
                spdlog::warn(
                    "user '{}' of tenant '{}' has a weak password_hash (ln={} below 15): re-create it with "
                    "`dingbridge-proxy hash-password`",
                    u.name, t.name, p.log2_n);
            }
            if (p.cost() < decoy.cost()) {
                spdlog::warn(
                    "user '{}' of tenant '{}' has cheaper scrypt parameters (ln={},r={},p={}) than other users "
                    "(ln={},r={},p={}): its logins answer faster than unknown names, revealing that it exists; "
                    "use the same parameters for all users",
                    u.name, t.name, p.log2_n, p.r, p.p, decoy.log2_n, decoy.r, decoy.p);
            }
        }
    }

    // Password checks are shared between tenants by source network (Policy::source_tenant):
    // tenants with password users and the same source_networks share one place in that queue.
    std::map<std::vector<std::string>, std::vector<std::string>> by_networks;
    for (const auto& t : policy.tenants()) {
        if (t.users.empty()) continue;
        std::vector<std::string> nets;
        for (const auto& n : t.source_networks.networks()) nets.push_back(n.to_string());
        std::sort(nets.begin(), nets.end());
        by_networks[nets].push_back("'" + t.name + "'");
    }
    for (const auto& [nets, names] : by_networks) {
        if (names.size() < 2) continue;
        std::string list;
        for (std::size_t i = 0; i < names.size(); ++i)
            list += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
        std::string where;
        for (const auto& n : nets) where += (where.empty() ? "" : ", ") + n;
        spdlog::warn(
            "tenants {} take password logins from the same source_networks ({}), so they share one place in "
            "the password-check queue: a wrong-password flood from there can hold up new logins of all of "
            "them; give each tenant the networks of its own clients",
            list, where);
    }
    // Overlapping lists share too, for the addresses in the overlap: the most specific network
    // that holds a client's address decides (the first tenant listed among equals).
    std::vector<std::pair<const Tenant*, std::vector<std::string>>> with_users;
    for (const auto& t : policy.tenants()) {
        if (t.users.empty()) continue;
        std::vector<std::string> nets;
        for (const auto& n : t.source_networks.networks()) nets.push_back(n.to_string());
        std::sort(nets.begin(), nets.end());
        with_users.emplace_back(&t, std::move(nets));
    }
    for (std::size_t i = 0; i < with_users.size(); ++i) {
        for (std::size_t j = i + 1; j < with_users.size(); ++j) {
            const auto& [a, a_nets] = with_users[i];
            const auto& [b, b_nets] = with_users[j];
            if (a_nets == b_nets) continue;  // named above
            for (const auto& n : a->source_networks.networks()) {
                const auto& others = b->source_networks.networks();
                const auto m = std::find_if(others.begin(), others.end(), [&](const Cidr& c) { return c.overlaps(n); });
                if (m == others.end()) continue;
                spdlog::warn(
                    "tenants '{}' and '{}' take password logins from overlapping source_networks ({} and {}): a "
                    "client in the overlap shares one place in the password-check queue with the other tenant's, "
                    "so a wrong-password flood from there can hold up new logins of both; give each tenant the "
                    "networks of its own clients",
                    a->name, b->name, n.to_string(), m->to_string());
                break;
            }
        }
    }

    // A certificate's subject names its tenant on any listener not dedicated to one, whichever of
    // the listeners' client CAs issued it: with two CAs, either can issue the other's subjects.
    bool subjects = false;
    for (const auto& t : policy.tenants()) subjects = subjects || !t.client_certificates.empty();
    std::set<std::string> cas;
    std::vector<std::string> shared_listeners;
    for (const auto& l : cfg.listeners) {
        if (!l.tls || l.tls->client_ca.empty()) continue;
        cas.insert(l.tls->client_ca);
        if (l.tenant.empty()) shared_listeners.push_back(l.address);
    }
    if (subjects && cas.size() > 1 && !shared_listeners.empty()) {
        std::string list;
        for (const auto& a : shared_listeners) list += (list.empty() ? "" : ", ") + a;
        spdlog::warn(
            "TLS listeners trust {} different client_ca files, and on {} (not dedicated to a tenant) a "
            "certificate's subject names whichever tenant lists it: each CA can issue another tenant's "
            "subject; dedicate each such listener to the tenant whose CA it trusts (tenant: NAME) or use one "
            "client_ca",
            cas.size(), list);
    }
    if (cfg.fd_budget_without_admin) {
        spdlog::warn(
            "the descriptor limit leaves no room for the admin port's {} connections beside the tunnels: while "
            "they are held, tunnels may fail for want of descriptors (502); raise the limit (LimitNOFILE)",
            kMaxAdminConnections);
    }
    if (cfg.fd_budget_connections != 0 && cfg.max_connections > cfg.fd_budget_connections) {
        spdlog::warn(
            "limits.max_connections {} exceeds what the descriptor limit carries ({} tunnels of {} descriptors); "
            "busy tunnels may fail mid-transfer: raise the limit (LimitNOFILE) or lower max_connections",
            cfg.max_connections, cfg.fd_budget_connections, cfg.relay == RelayMode::splice ? 6 : 2);
    }
}

// The bound addresses, one a line (and admin=...), written atomically for supervisors and tests.
void write_ready_file(const Server& server, const std::string& ready_file) {
    const std::string tmp = ready_file + ".tmp";
    {
        std::ofstream out(tmp);
        for (const auto& a : server.bound_addresses()) out << a << "\n";
        if (!server.admin_address().empty()) out << "admin=" << server.admin_address() << "\n";
    }
    std::rename(tmp.c_str(), ready_file.c_str());
}

// SIGHUP: reload the configuration and reopen the log files (also when the new file is invalid).
void reload(Server& server, const std::string& config_path) {
    try {
        // Cached logins stay cached: a logrotate SIGHUP during a wrong-password flood must not
        // send every password tenant through the saturated verification pool.
        ProxyConfig next = load_proxy_config(config_path, server.config()->policy->credential_cache());
        // As at start: an egress address the host lacks would fail every tunnel after the swap
        // (the log files are checked by opening them, below).
        if (const auto problems = address_problems(next); !problems.empty()) throw std::runtime_error(problems.front());
        // Opened before the swap: a log that cannot be opened fails the reload as a whole, instead
        // of after the new configuration already runs (with "keeping the running configuration").
        auto log = make_logger(next.log);
        server.reload(std::move(next));
        install_logger(log);
        warn_about_risky_settings(*server.config());
        // Logged before counted: whoever sees the counter move finds the line already written.
        spdlog::info("configuration reloaded from {}", config_path);
        server.shared().metrics.count_reload(true);
    } catch (const std::exception& e) {
        // Log rotation must not depend on the new file being valid: the current files are
        // reopened first, so that this failure is written where the operator now looks.
        reopen_log(server.config()->log, "reload");
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
        try {
            server.reopen_access_log(*server.config());
        } catch (const std::exception& reopen) {
            spdlog::error("cannot reopen the access log, still writing to the old file: {}", reopen.what());
        }
        server.shared().metrics.count_reload(false);
    }
}

int run(const std::string& config_path, const std::string& ready_file) {
    ProxyConfig cfg = load_proxy_config(config_path);
    if (const auto problems = host_problems(cfg); !problems.empty()) throw std::runtime_error(problems.front());
    configure_logging(cfg.log);
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    // Blocked before the workers start, so only sigwait below ever sees them.
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    warn_about_risky_settings(cfg);
    Server server(std::move(cfg));
    server.start();
    for (const auto& a : server.bound_addresses()) spdlog::info("listening on {}", a);
    if (!server.admin_address().empty()) spdlog::info("admin endpoint on http://{}/metrics", server.admin_address());
    spdlog::info("dingbridge-proxy started with {} worker(s), {} tenant(s), max_connections {}",
                 server.config()->workers, server.config()->policy->tenants().size(), server.config()->max_connections);
    if (!ready_file.empty()) write_ready_file(server, ready_file);
    // Between signals, every few seconds: the host's own addresses, which tunnels must not reach,
    // may change while the proxy runs (an address added, a container bridge brought up).
    const timespec every{5, 0};
    while (true) {
        const int sig = sigtimedwait(&signals, nullptr, &every);
        if (sig < 0) {
            server.refresh_local_addresses();
            continue;
        }
        if (sig == SIGHUP) {
            reload(server, config_path);
            server.refresh_local_addresses();
            continue;
        }
        break;
    }
    const auto grace = server.config()->shutdown_grace;
    spdlog::info("shutting down: no new connections, waiting up to {} ms for open tunnels", grace.count());
    const std::size_t cut = server.drain(grace);
    if (cut > 0) spdlog::warn("closed {} connection(s) still open at the shutdown deadline", cut);
    spdlog::info("dingbridge-proxy stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"dingbridge-proxy: an HTTPS forwarding (CONNECT) proxy for the DingTalk egress server"};
    app.set_version_flag("--version", std::string("dingbridge-proxy ") + DINGBRIDGE_VERSION);
    std::string config_path = "/etc/dingbridge/proxy.yaml";
    bool check_only = false;
    std::string ready_file;
    app.add_option("-c,--config", config_path, "configuration file (YAML)")->capture_default_str();
    app.add_flag("--check-config", check_only,
                 "validate the configuration file, print the result and exit 0 (valid) or 1");
    app.add_option("--ready-file", ready_file, "write the bound listener addresses to this file once listening");

    auto* hash = app.add_subcommand("hash-password",
                                    "read a password (terminal prompt or one line on stdin) and print the scrypt hash "
                                    "to store as password_hash in the configuration");
    app.require_subcommand(0, 1);
    CLI11_PARSE(app, argc, argv);

    if (hash->parsed()) {
        try {
            const std::string password = read_password_from_terminal_or_stdin();
            if (password.empty()) {
                std::cerr << "dingbridge-proxy: empty password refused\n";
                return 1;
            }
            std::cout << PasswordHash::create(password).to_string() << "\n";
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "dingbridge-proxy: " << e.what() << "\n";
            return 1;
        }
    }

    evthread_use_pthreads();
    if (check_only) {
        try {
            const ProxyConfig cfg = load_proxy_config(config_path);
            if (const auto problems = host_problems(cfg); !problems.empty()) {
                for (const auto& p : problems) std::cerr << "dingbridge-proxy: " << config_path << ": " << p << "\n";
                return 1;
            }
            std::cout << config_path << ": configuration is valid (" << cfg.listeners.size() << " listener(s), "
                      << cfg.policy->tenants().size() << " tenant(s), " << cfg.workers << " worker(s))\n";
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "dingbridge-proxy: " << e.what() << "\n";
            return 1;
        }
    }
    try {
        return run(config_path, ready_file);
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-proxy: " << e.what() << "\n";
        return 1;
    }
}
