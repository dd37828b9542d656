#include "proxy/server.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace dingbridge::proxy {

namespace {

struct BoundSocket {
    int fd;
    std::uint16_t port;
};

BoundSocket bind_listener(const ListenerConfig& l, std::uint16_t port, bool shared_port) {
    const SocketAddress sa = SocketAddress::of(*IpAddress::parse(l.host), port);
    const int family = sa.family();
    int one = 1;
    if (port != 0 && !shared_port) {
        // SO_REUSEPORT lets any process of the same user share the port and silently take half
        // the clients. Our workers share it; another instance must not: a probe bound without
        // SO_REUSEPORT fails while anyone listens there.
        const int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (family == AF_INET6) setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            const int rc = bind(probe, sa.get(), sa.length);
            const int err = errno;
            ::close(probe);
            if (rc != 0 && err == EADDRINUSE) {
                throw std::runtime_error("cannot listen on " + l.address +
                                         ": address already in use (is another dingbridge-proxy running?)");
            }
        }
    }
    const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    // Accepted sockets inherit TCP_NODELAY: one call here instead of one per client.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, sa.get(), sa.length) != 0 || listen(fd, 4096) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("cannot listen on " + l.address + ": " + std::strerror(err));
    }
    sockaddr_storage actual{};
    socklen_t alen = sizeof actual;
    getsockname(fd, reinterpret_cast<sockaddr*>(&actual), &alen);
    return {fd, port_of(reinterpret_cast<sockaddr*>(&actual))};
}

// Every local address a wildcard listener answers on, for the loop guard.
std::vector<IpAddress> local_addresses(bool v4) {
    std::vector<IpAddress> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
        if (i->ifa_addr == nullptr) continue;
        if ((i->ifa_addr->sa_family == AF_INET) != v4 ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) {
            continue;
        }
        if (auto ip = IpAddress::from_sockaddr(i->ifa_addr)) out.push_back(*ip);
    }
    freeifaddrs(list);
    return out;
}

// The networks whose addresses reach a socket bound to `bound`. A wildcard socket is reached
// through every local address of its family, and through all of 127.0.0.0/8 for IPv4 (Linux
// routes the whole block to lo although only 127.0.0.1 is assigned) or ::1 for IPv6; a
// `dual_stack` IPv6 wildcard (not IPV6_V6ONLY, as the admin socket) through IPv4's too.
std::vector<Cidr> networks_reaching(const IpAddress& bound, bool dual_stack) {
    const bool v4_wildcard = bound == *IpAddress::parse("0.0.0.0");
    const bool v6_wildcard = bound == *IpAddress::parse("::");
    if (!v4_wildcard && !v6_wildcard) return {Cidr::host(bound)};
    std::vector<Cidr> out;
    auto add_family = [&out](bool v4) {
        out.push_back(*Cidr::parse(v4 ? "127.0.0.0/8" : "::1/128"));
        for (const auto& local : local_addresses(v4)) out.push_back(Cidr::host(local));
    };
    add_family(v4_wildcard);
    if (v6_wildcard && dual_stack) add_family(true);
    return out;
}

}  // namespace

Server::Server(ProxyConfig config) : config_(std::make_shared<const ProxyConfig>(std::move(config))) {}

Server::~Server() { stop(); }

std::shared_ptr<const ProxyConfig> Server::config() const { return config_.load(); }

void Server::start() {
    const auto cfg = config();
    access_log_ = std::make_unique<ReopenableLineLog>("access", cfg->access_log_file);
    auto access = access_log_->logger();
    shared_.verifier = std::make_unique<VerifierPool>(cfg->verify_threads, cfg->verify_queue);
    for (unsigned i = 0; i < cfg->workers; ++i) {
        workers_.push_back(std::make_unique<Worker>(
            i, [this] { return config(); }, access, shared_));
    }
    for (unsigned index = 0; index < cfg->listeners.size(); ++index) {
        const auto& l = cfg->listeners[index];
        // The first socket fixes the port (port 0 = any free port); the other workers' sockets
        // share it through SO_REUSEPORT, so the kernel spreads connections across threads.
        BoundSocket first = bind_listener(l, l.port, false);
        workers_[0]->add_listener(first.fd, index);
        for (unsigned i = 1; i < workers_.size(); ++i)
            workers_[i]->add_listener(bind_listener(l, first.port, true).fd, index);
        const IpAddress ip = *IpAddress::parse(l.host);
        bound_.push_back(ip.is_v4() ? l.host + ":" + std::to_string(first.port)
                                    : "[" + ip.to_string() + "]:" + std::to_string(first.port));
        own_ports_.push_back({ip, first.port, false});
    }
    if (!cfg->admin_address.empty()) {
        admin_ = std::make_unique<AdminServer>(cfg->admin_address, shared_);
        auto hp = split_host_port(admin_->bound_address());
        if (hp) {
            // A tunnel to the admin port would hand /metrics to any tenant allowed loopback.
            if (auto ip = IpAddress::parse(hp->host)) own_ports_.push_back({*ip, hp->port, true});
        }
    }
    refresh_local_addresses();
    std::vector<Worker*> all;
    for (auto& w : workers_) all.push_back(w.get());
    for (auto& w : workers_) w->set_siblings(all);
    for (auto& w : workers_) w->start();
}

void Server::reopen_access_log(const ProxyConfig& cfg) {
    if (!access_log_) return;
    const std::string previous = access_log_->file();
    access_log_->reopen(cfg.access_log_file);
    if (previous != cfg.access_log_file) {
        spdlog::info("access log now written to {}", cfg.access_log_file.empty() ? "stdout" : cfg.access_log_file);
    }
}

void Server::refresh_local_addresses() {
    LocalAddresses now;
    for (const auto& p : own_ports_)
        for (const Cidr& net : networks_reaching(p.ip, p.dual_stack)) now.self_endpoints.emplace_back(net, p.port);
    now.host_networks = networks_reaching(*IpAddress::parse("::"), true);
    const auto before = shared_.local.load();
    if (*before == now) return;
    if (!before->host_networks.empty()) {
        std::string list;
        for (const auto& net : now.host_networks) list += (list.empty() ? "" : ", ") + net.to_string();
        spdlog::info("this host's addresses changed; refused to tunnels unless allow_internal_networks holds them: {}",
                     list);
    }
    shared_.local.store(std::make_shared<const LocalAddresses>(std::move(now)));
}

std::size_t Server::open_connections() const {
    std::size_t n = 0;
    for (const auto& w : workers_) n += w->open_connections();
    return n;
}

std::size_t Server::drain(std::chrono::milliseconds grace) {
    for (auto& w : workers_) w->stop_accepting();
    const auto deadline = std::chrono::steady_clock::now() + grace;
    // /healthz turns 503 only once every listener is closed, so a client that saw "draining" is
    // never accepted afterwards (the workers close them on their own threads, within a loop turn).
    const auto closed = [this] {
        for (const auto& w : workers_)
            if (!w->stopped_accepting()) return false;
        return true;
    };
    while (!closed() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    shared_.draining = true;
    std::size_t open = open_connections();
    while (open > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        open = open_connections();
    }
    stop();
    return open;
}

void Server::stop() {
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) w->join();
    // Verification threads post results to workers: stop them before the workers go.
    if (shared_.verifier) shared_.verifier->stop();
    workers_.clear();
    admin_.reset();
}

void Server::reload(ProxyConfig next) {
    std::shared_ptr<const ProxyConfig> fresh = std::make_shared<const ProxyConfig>(std::move(next));
    std::lock_guard<std::mutex> lock(mutex_);
    const std::shared_ptr<const ProxyConfig> current = config_.load();
    // Sockets stay bound across a reload, and tunnels index the listener list; refuse changes to it.
    bool same = fresh->listeners.size() == current->listeners.size() && fresh->admin_address == current->admin_address;
    for (std::size_t i = 0; same && i < fresh->listeners.size(); ++i) {
        same = fresh->listeners[i].address == current->listeners[i].address &&
               static_cast<bool>(fresh->listeners[i].tls) == static_cast<bool>(current->listeners[i].tls);
    }
    if (!same) throw std::runtime_error("listener or admin address changes (or adding/removing tls) need a restart");
    if (fresh->workers != current->workers) spdlog::warn("reload: a new worker count takes effect after a restart");
    reopen_access_log(*fresh);  // throws (nothing swapped) when the new file cannot be opened
    config_.store(std::move(fresh));
}

}  // namespace dingbridge::proxy
