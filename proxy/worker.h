#pragma once
// A worker thread of dingbridge-proxy: one event_base, one evdns_base, its own SO_REUSEPORT
// listening sockets, and the tunnels it accepted. Tunnels are created, driven and deleted on this
// thread only; `retire` queues a closed tunnel for deletion from a zero-delay event so no
// callback ever frees memory another callback may still touch. `stop` may be called from any
// thread (libevent is initialised with pthreads support).

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <spdlog/logger.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "proxy/config.h"
#include "proxy/metrics.h"
#include "proxy/send_offload.h"
#include "proxy/socket_relay.h"
#include "proxy/source_slots.h"
#include "proxy/verifier.h"
#include "shared/auth_throttle.h"
#include "shared/log.h"

namespace dingbridge::proxy {

class Tunnel;

// What a tunnel must never reach on this host: the host itself on any port (loopback and every
// interface address: the host's services over lo, past a firewall that shields them from outside,
// whatever deny_networks says) and, as a loop guard, our own listeners and admin port.
struct LocalAddresses {
    std::vector<std::pair<Cidr, std::uint16_t>> self_endpoints;  // the networks reaching each port
    std::vector<Cidr> host_networks;

    bool is_self(const IpAddress& ip, std::uint16_t port) const {
        for (const auto& [net, p] : self_endpoints)
            if (p == port && net.contains(ip)) return true;
        return false;
    }
    bool is_host(const IpAddress& ip) const {
        for (const auto& net : host_networks)
            if (net.contains(ip)) return true;
        return false;
    }
    bool operator==(const LocalAddresses&) const = default;
};

// State shared by all workers of one process (thread-safe members only).
struct SharedState {
    Metrics metrics;
    AuthThrottle auth_throttle;
    std::atomic<bool> draining{false};
    std::unique_ptr<VerifierPool> verifier;       // password checks, off the event loops
    std::atomic<std::size_t> bulk_directions{0};  // copy-relay directions moving bulk bytes now (SocketRelay)
    SourceSlots unauthorised;                     // connections per source not yet admitted (source_slots.h)

    // This host's own addresses and our own ports, as Server::refresh_local_addresses last
    // found them (at start, on SIGHUP and every few seconds: an address added to an interface
    // later is refused within seconds).
    std::atomic<std::shared_ptr<const LocalAddresses>> local{std::make_shared<const LocalAddresses>()};
};

class Worker {
public:
    using ConfigSource = std::function<std::shared_ptr<const ProxyConfig>()>;

    Worker(unsigned index, ConfigSource config, std::shared_ptr<spdlog::logger> access_log, SharedState& shared);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Takes ownership of a bound, listening, non-blocking socket for config listener `index`.
    void add_listener(int fd, unsigned index);
    void start();
    void stop();            // thread-safe; returns from the loop (open tunnels are freed on destruction)
    void stop_accepting();  // thread-safe; closes the listening sockets (drain) soon, on the loop thread
    // True once stop_accepting's work has run: this worker's listening sockets are closed.
    bool stopped_accepting() const { return stopped_accepting_.load(std::memory_order_acquire); }
    void join();

    // The configuration now in force (a reload swaps it); any thread.
    std::shared_ptr<const ProxyConfig> config() const { return config_(); }
    event_base* base() { return base_; }
    evdns_base* dns() { return dns_; }
    // Name lookups in flight on this worker's resolver, per tenant. The resolver sends at most
    // kLookupsInFlight lookups at once (each an A and an AAAA query) and queues the rest in one
    // line for every tenant, so one tenant keeping names unanswered (its own slow domain, or
    // made-up names under a wildcard) delayed every other tenant's lookups by up to dns_timeout.
    // A tenant may hold kLookupsPerTenant of them; its next lookup is refused at once (503).
    static constexpr unsigned kLookupsInFlight = 2048;
    static constexpr unsigned kLookupsPerTenant = 256;
    bool begin_lookup(const std::string& tenant) {
        unsigned& n = lookups_[tenant];
        if (n >= kLookupsPerTenant) return false;
        ++n;
        return true;
    }
    void end_lookup(const std::string& tenant) {
        const auto it = lookups_.find(tenant);
        if (it != lookups_.end() && --it->second == 0) lookups_.erase(it);
    }
    spdlog::logger& access_log() { return *access_log_; }
    SharedState& shared() { return shared_; }
    StagePool& stages() { return stages_; }
    SendOffload& send_offload() { return *offload_; }
    // The tenant's process-wide runtime (counters, limits), cached per worker so the hot path
    // takes no global lock.
    TenantRuntime& tenant_runtime(const std::string& name);

    // All workers of the process (this one included), for handing new clients to a less busy one.
    void set_siblings(std::vector<Worker*> all) { siblings_ = std::move(all); }

    // Password checks in flight on this worker, by Tunnel::check_key: a request with the same
    // credentials from the same address under the same configuration waits for that check
    // instead of running (and counting against auth_failures.max_failures as) one of its own.
    // Loop thread only.
    std::vector<Tunnel*>* waiting_for_check(const std::string& key);  // null: none in flight
    void begin_check(const std::string& key) { checks_.try_emplace(key); }
    std::vector<Tunnel*> end_check(const std::string& key);  // the requests that waited for it

    void retire(Tunnel* tunnel);
    // Runs `task` on this worker's loop thread soon. Thread-safe (verification results).
    void post(std::function<void()> task);
    std::size_t open_connections() const { return open_.load(); }

    static std::string timestamp();  // ISO 8601 UTC with milliseconds

private:
    std::unordered_map<std::string, unsigned> lookups_;  // tenant -> lookups in flight (loop thread only)
    static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int len, void* arg);
    static void on_accept_error(evconnlistener* listener, void* arg);
    static void on_reap(evutil_socket_t, short, void* arg);
    static void on_resume_accept(evutil_socket_t, short, void* arg);
    static void on_stop(evutil_socket_t, short, void* arg);
    static void on_stop_accepting(evutil_socket_t, short, void* arg);
    static void on_inbox(evutil_socket_t, short, void* arg);
    // The worker that should take a new client: this one, or a sibling with clearly fewer open
    // connections (SO_REUSEPORT spreads clients by a hash, which can leave 3 of 4 busy tunnels on
    // one thread).
    Worker* least_busy();
    void adopt(int fd, const sockaddr* addr, unsigned listener_index, std::shared_ptr<const ProxyConfig> config);

    struct ListenerSlot {
        Worker* worker;
        unsigned index;
        evconnlistener* listener;
    };

    unsigned index_;
    ConfigSource config_;
    std::shared_ptr<spdlog::logger> access_log_;
    event_base* base_ = nullptr;
    evdns_base* dns_ = nullptr;
    event* reap_event_ = nullptr;
    event* resume_accept_ = nullptr;
    ThrottledWarning accept_failed_;  // out of descriptors: one warning a minute, not ten a second
    ThrottledWarning source_capped_;  // a source at max_pending_per_source: one warning a minute
    event* stop_event_ = nullptr;
    event* stop_accepting_event_ = nullptr;
    std::atomic<bool> stopped_accepting_{false};
    event* inbox_event_ = nullptr;
    std::mutex inbox_mutex_;
    std::vector<std::function<void()>> inbox_;
    SharedState& shared_;
    StagePool stages_;                      // declared before the tunnels are freed in ~Worker, destroyed after them
    std::unique_ptr<SendOffload> offload_;  // its thread starts with the first bulk send; freed after the tunnels
    std::vector<std::unique_ptr<ListenerSlot>> listeners_;
    std::vector<Worker*> siblings_;
    std::unordered_set<Tunnel*> live_;
    std::unordered_map<std::string, TenantRuntime*> runtimes_;
    std::unordered_map<std::string, std::vector<Tunnel*>> checks_;  // see waiting_for_check
    std::vector<Tunnel*> retired_;
    std::atomic<std::size_t> open_{0};
    std::thread thread_;
};

}  // namespace dingbridge::proxy
