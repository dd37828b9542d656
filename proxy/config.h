#pragma once
// dingbridge-proxy configuration: the YAML file (configs/proxy.yaml documents every key) turned
// into an immutable ProxyConfig. `load_proxy_config` throws ConfigError with file:line:column.
// A loaded config is shared read-only between worker threads.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/policy.h"
#include "proxy/tls.h"
#include "shared/auth_throttle.h"
#include "shared/config.h"
#include "shared/log.h"

namespace dingbridge::proxy {

struct ListenerConfig {
    std::string address;  // as written, "127.0.0.1:3128" / "[::]:3128"
    std::string host;
    std::uint16_t port = 0;
    std::optional<TlsSettings> tls;
    std::shared_ptr<SSL_CTX> tls_context;  // built at load, swapped on reload
    bool require_tls = false;              // plain listener: refuse credentials sent in clear
    std::string tenant;                    // dedicated listener: every client belongs to this tenant
};

// copy: recv/send through a pooled buffer; splice: through a pipe; automatic (`auto`): a buffer
// for small bursts and a pipe for bulk transfers while the worker has one to lend; buffered:
// through the bufferevents, as TLS tunnels always do.
enum class RelayMode { copy, splice, buffered, automatic };

struct ProxyConfig {
    std::vector<ListenerConfig> listeners;
    unsigned workers = 1;
    std::string realm = "dingbridge";

    std::size_t max_head_bytes = 8 * 1024;
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds dns_timeout{5'000};
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds idle_timeout{2 * 3600 * 1000};
    std::size_t buffer_size = 64 * 1024;     // per direction high watermark
    RelayMode relay = RelayMode::automatic;  // how plain tunnels relay (socket_relay.h)
    bool relay_send_thread = true;           // copy relay: bulk sends on the worker's send thread (send_offload.h)
    std::chrono::milliseconds tls_handshake_timeout{10'000};
    std::chrono::milliseconds shutdown_grace{30'000};
    std::uint64_t max_connections = 0;  // 0 = unlimited
    // Connections one source (IPv4 address or IPv6 /64) may hold before it is authorised
    // (source_slots.h); 0 = no cap. Unset: a quarter of max_connections, 16 to 128.
    std::uint64_t max_pending_per_source = 0;
    std::uint64_t fd_budget_connections = 0;  // what the descriptor limit allows (0 = no limit)
    bool fd_budget_without_admin = false;     // the limit was too small to count the admin port's connections
    std::size_t pipe_pool_keep = 64;          // empty pipes each worker keeps for reuse
    std::size_t pipes_lent = 32;              // relay auto: pipes each worker lends to bulk directions at once
    AuthThrottleSettings auth_throttle;
    // A throttled request's 429 goes out after this long (auth_failures.reply_delay; 0 = at once):
    // a client guessing in a loop then costs one connection per delay, not one per round trip.
    std::chrono::milliseconds throttled_reply_delay{2'000};
    unsigned verify_threads = 0;    // password-check threads; 0 = half the cores (at least 1). Restart to change.
    std::size_t verify_queue = 16;  // checks waiting beyond that get 503 at once. Restart to change.
    std::string admin_address;      // empty = no admin endpoint

    std::optional<IpAddress> bind_v4;  // outgoing.bind_address (the egress IP)
    std::optional<IpAddress> bind_v6;

    LogSettings log;
    std::string access_log_format = "text";  // text or json
    std::string access_log_file;             // empty = stdout

    std::shared_ptr<const Policy> policy;
};

// How many throttled replies may wait out throttled_reply_delay at once: an eighth of
// max_connections (4096 when unlimited), so held connections never crowd out tenants; beyond it
// the 429 goes out at once.
std::uint64_t delayed_reply_limit(const ProxyConfig& cfg);

// Connections the admin port keeps (Prometheus and health checks need a few; each request is
// answered at once); a new one closes the oldest, after it was accepted (one more for a moment).
inline constexpr std::size_t kMaxAdminConnections = 64;

// How many client connections a descriptor limit carries: a tunnel holds its 2 sockets, and with
// `relay: splice` and both directions backed up also 2 pipes (6 descriptors); with splice each
// worker keeps `pipe_keep` spare pipes (2 each). Every worker has a few descriptors of its own
// (event loop, resolver, listeners); the process a few more (logs, config reads), and with an
// admin port its listener and up to kMaxAdminConnections + 1 connections. `connections` is 0
// when the limit can't carry even one tunnel.
struct FdBudget {
    std::uint64_t connections = 0;
    std::size_t pipe_keep = 0;
    std::size_t pipes_lent = 0;  // relay auto: per worker, set aside like the spare pipes
};
FdBudget fd_budget(std::uint64_t fd_limit, unsigned workers, std::size_t listeners, RelayMode relay, bool admin);

// `credential_cache`: on a reload, the running policy's (see CredentialCache); null = a new one.
ProxyConfig load_proxy_config(const std::string& path, std::shared_ptr<CredentialCache> credential_cache = nullptr);
ProxyConfig parse_proxy_config(const ConfigNode& root, std::shared_ptr<CredentialCache> credential_cache = nullptr);

}  // namespace dingbridge::proxy
