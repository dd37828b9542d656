#pragma once
// dingbridge-proxy's process-level object: it binds the listeners, runs the worker threads and
// the admin endpoint, and holds the current configuration, which `reload` swaps atomically (new
// connections get the new policy and TLS certificates, open tunnels keep what they started with).
// Constructed and driven from the main thread; `config()` may be called from any thread.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/worker.h"
#include "shared/log.h"

namespace dingbridge::proxy {

class Server {
public:
    explicit Server(ProxyConfig config);
    ~Server();

    // Binds every listener (one SO_REUSEPORT socket per worker) and the admin endpoint, and
    // starts the workers. Throws std::runtime_error naming the address when a bind fails.
    void start();
    // Graceful stop: close the listeners, wait for open connections to finish up to `grace`,
    // then stop. Returns the number of connections still open at the deadline (cut).
    std::size_t drain(std::chrono::milliseconds grace);
    void stop();

    // Listening addresses as bound (port 0 resolved), e.g. "127.0.0.1:41234"; admin last if any.
    const std::vector<std::string>& bound_addresses() const { return bound_; }
    std::string admin_address() const { return admin_ ? admin_->bound_address() : ""; }

    std::shared_ptr<const ProxyConfig> config() const;
    // Replaces the policy for new connections; listener address changes need a restart (logged).
    void reload(ProxyConfig next);
    SharedState& shared() { return shared_; }
    // Reopens the access log (after rotation), or opens access_log.file of `cfg` when it changed.
    // Throws (keeping the current file) when it cannot be opened.
    void reopen_access_log(const ProxyConfig& cfg);
    // Reads this host's interface addresses again (getifaddrs) and publishes them, with our own
    // listeners' and admin port's, to the workers when they changed. Main thread only.
    void refresh_local_addresses();

private:
    std::size_t open_connections() const;

    mutable std::mutex mutex_;                                // serializes reloads
    std::atomic<std::shared_ptr<const ProxyConfig>> config_;  // read on every accept, lock-free
    SharedState shared_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::unique_ptr<AdminServer> admin_;
    std::unique_ptr<ReopenableLineLog> access_log_;
    std::vector<std::string> bound_;
    struct OwnPort {
        IpAddress ip;  // as bound: a wildcard is reached through every local address
        std::uint16_t port;
        bool dual_stack;
    };
    std::vector<OwnPort> own_ports_;
};

}  // namespace dingbridge::proxy
