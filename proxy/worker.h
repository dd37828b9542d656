#pragma once
// A worker thread of dingbridge-proxy: one event_base, one evdns_base, its own SO_REUSEPORT
// listening sockets, and the tunnels it accepted. Tunnels are created, driven and deleted on this
// thread only; `retire` queues a closed tunnel for deletion from a zero-delay event so no
// callback ever frees memory another callback may still touch. `stop` may be called from any
// thread (libevent is initialised with pthreads support).

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <spdlog/logger.h>

#include "proxy/config.h"

namespace dingbridge::proxy {

class Tunnel;

struct WorkerStats {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> tunnels{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> dns_failures{0};
};

class Worker {
public:
    using ConfigSource = std::function<std::shared_ptr<const ProxyConfig>()>;

    Worker(unsigned index, ConfigSource config, std::shared_ptr<spdlog::logger> access_log);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Takes ownership of a bound, listening, non-blocking socket.
    void add_listener(int fd);
    void start();
    void stop();  // thread-safe; closes open tunnels and returns from the loop
    void join();

    event_base* base() { return base_; }
    evdns_base* dns() { return dns_; }
    spdlog::logger& access_log() { return *access_log_; }
    void set_access_log(std::shared_ptr<spdlog::logger> log);  // before start or from this thread

    void retire(Tunnel* tunnel);
    void count_dns_failure() { stats_.dns_failures++; }
    void count_result(int status);
    const WorkerStats& stats() const { return stats_; }
    std::size_t open_tunnels() const { return open_.load(); }

    static std::string timestamp();  // ISO 8601 UTC with milliseconds

private:
    static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int len, void* arg);
    static void on_accept_error(evconnlistener* listener, void* arg);
    static void on_reap(evutil_socket_t, short, void* arg);
    static void on_resume_accept(evutil_socket_t, short, void* arg);
    static void on_stop(evutil_socket_t, short, void* arg);

    unsigned index_;
    ConfigSource config_;
    std::shared_ptr<spdlog::logger> access_log_;
    event_base* base_ = nullptr;
    evdns_base* dns_ = nullptr;
    event* reap_event_ = nullptr;
    event* resume_accept_ = nullptr;
    event* stop_event_ = nullptr;
    std::vector<evconnlistener*> listeners_;
    std::unordered_set<Tunnel*> live_;
    std::vector<Tunnel*> retired_;
    std::atomic<std::size_t> open_{0};
    WorkerStats stats_;
    std::thread thread_;
};

}  // namespace dingbridge::proxy
