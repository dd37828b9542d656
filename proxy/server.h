#pragma once
// dingbridge-proxy's process-level object: it binds the listeners, runs the worker threads and
// holds the current configuration, which `reload` swaps atomically (new connections get the
// new policy, open tunnels keep the one they started with). Constructed and driven from the main
// thread; `config()` may be called from any thread.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/worker.h"

namespace dingbridge::proxy {

class Server {
public:
    explicit Server(ProxyConfig config);
    ~Server();

    // Binds every listener (one SO_REUSEPORT socket per worker) and starts the workers. Throws
    // std::runtime_error naming the address when a bind fails.
    void start();
    void stop();
    // Listening addresses as bound (port 0 resolved), e.g. "127.0.0.1:41234".
    const std::vector<std::string>& bound_addresses() const { return bound_; }

    std::shared_ptr<const ProxyConfig> config() const;
    // Replaces the policy for new connections; listener changes need a restart (logged).
    void reload(ProxyConfig next);

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const ProxyConfig> config_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::string> bound_;
};

}  // namespace dingbridge::proxy
