#pragma once
// Process-wide counters of dingbridge-proxy, rendered as Prometheus text for the admin endpoint.
//
// Counters are atomics updated from worker threads without locks. Per-tenant state (counters,
// active tunnels, connect-rate bucket) lives in TenantRuntime objects that are created on first
// use, keyed by tenant name, and never freed while the process runs — so a tunnel can keep a raw
// pointer to its tenant's runtime across configuration reloads.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace dingbridge::proxy {

// Fixed-bucket latency histogram (seconds), lock-free.
class Histogram {
public:
    static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
    void observe(std::chrono::microseconds value);
    void render(std::string& out, const std::string& name, const std::string& labels) const;

private:
    std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::uint64_t> sum_us_{0};
};

// Refusal reasons, one counter each (denials_total{reason=...}).
enum class Denial {
    malformed,
    method,
    head_too_large,
    header_timeout,
    auth,
    source,
    destination,
    network,
    tunnel_limit,
    rate_limit,
    auth_throttled,
    max_connections,
    loop,
    tls_required,
    tls_handshake,
    auth_busy,
    source_connections,
    count_
};
const char* denial_name(Denial d);

// A token bucket: `rate` tokens per second, up to `burst`. Thread-safe.
class RateBucket {
public:
    // Returns 0 when a token was taken, else the whole seconds until one is available (≥1).
    int take(double rate, double burst);

private:
    std::mutex mutex_;
    double tokens_ = -1;  // -1: full on first use
    std::chrono::steady_clock::time_point last_;
};

// The final statuses a connection can end with; connections_total has one counter each.
inline constexpr std::array<int, 13> kStatuses = {200, 400, 403, 405, 407, 408, 429, 431, 499, 502, 503, 504, 500};

struct TenantRuntime {
    std::atomic<std::uint64_t> active{0};
    std::atomic<std::uint64_t> bytes_up{0};
    std::atomic<std::uint64_t> bytes_down{0};
    std::array<std::atomic<std::uint64_t>, kStatuses.size()> by_status{};  // lock-free per status
    RateBucket connect_rate;
    std::array<std::atomic<std::uint64_t>, static_cast<int>(Denial::count_)> denials{};  // once the tenant is known
};

class Metrics {
public:
    TenantRuntime& tenant(const std::string& name);  // "" = unidentified clients

    void count_connection(TenantRuntime& t, int status);
    void count_denial(Denial d) { denials_[static_cast<int>(d)]++; }
    // A real credential failure: a wrong password, an unknown user, an unusable Proxy-Authorization
    // (not the first-round 407 of a client that sends credentials only when challenged).
    void count_auth_failure() { auth_failures_++; }
    void count_dns_failure() { dns_failures_++; }
    void count_reload(bool ok) { (ok ? reloads_ok_ : reloads_failed_)++; }
    void connection_opened() { open_connections_++; }
    void connection_closed() { open_connections_--; }
    // Bytes the workers' send threads sent (send_offload.h).
    std::atomic<std::uint64_t>& send_thread_bytes() { return send_thread_bytes_; }
    // Bytes the relays moved through pipes (relay: splice, and auto's bulk transfers).
    std::atomic<std::uint64_t>& spliced_bytes() { return spliced_bytes_; }
    // Relay turns cut short because many bulk directions of the worker were reading (socket_relay.h).
    std::atomic<std::uint64_t>& short_turns() { return short_turns_; }
    // Throttled 429s waiting out auth_failures.reply_delay now (Tunnel::deny_throttled).
    std::atomic<std::uint64_t>& delayed_replies() { return delayed_replies_; }
    std::uint64_t open_connections() const { return open_connections_.load(); }

    Histogram connect_latency;  // upstream TCP connect
    Histogram setup_latency;    // accept → 200 Connection established

    std::string render_prometheus() const;

private:
    mutable std::mutex tenants_mutex_;
    std::map<std::string, std::unique_ptr<TenantRuntime>> tenants_;
    std::array<std::atomic<std::uint64_t>, static_cast<int>(Denial::count_)> denials_{};
    std::atomic<std::uint64_t> auth_failures_{0};
    std::atomic<std::uint64_t> dns_failures_{0};
    std::atomic<std::uint64_t> reloads_ok_{0};
    std::atomic<std::uint64_t> reloads_failed_{0};
    std::atomic<std::uint64_t> open_connections_{0};
    std::atomic<std::uint64_t> send_thread_bytes_{0};
    std::atomic<std::uint64_t> short_turns_{0};
    std::atomic<std::uint64_t> spliced_bytes_{0};
    std::atomic<std::uint64_t> delayed_replies_{0};
};

}  // namespace dingbridge::proxy
