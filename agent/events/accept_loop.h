#pragma once
// The accept loop of the agent's HTTP listeners: the HTTP push receiver, /healthz + /metrics
// (HttpServer) and the web console (web::WebServer). The push receiver faces DingTalk, so the
// internet; no client may take the process's descriptors or a core:
//  - at most `max_connections` connections are served at once; at the limit the loop accepts no
//    more until one ends (the kernel's backlog holds the next ones), so the DingTalk client, the
//    event journal and the target keep descriptors to work with;
//  - out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) it waits 100 ms before
//    the next accept instead of retrying at once (the failed connection stays in the backlog, so
//    an immediate retry fails again: a busy loop writing one warning per turn);
//  - each kind of warning is logged at most once a minute, with how many were left out.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "shared/net.h"

namespace dingbridge::agent::events {

// Enough for DingTalk's pushes, a Prometheus scraper and a few console users; with three
// listeners 384 descriptors at most, well under the usual soft limit of 1,024.
constexpr std::size_t kMaxListenerConnections = 128;

// Connections open per source (an IPv4 address or an IPv6 /64, AuthThrottle::source_key) on one
// listener, at most `cap` each; used on the listener's one thread only.
class SourceCounts {
public:
    explicit SourceCounts(int cap) : cap_(cap) {}
    int cap() const { return cap_; }
    bool full(const std::string& key) const {
        const auto it = open_.find(key);
        return it != open_.end() && it->second >= cap_;
    }
    // True the first time `key` is found full since it was last below the cap: warn once.
    bool newly_full(const std::string& key) { return capped_.insert(key).second; }

    // One connection of `key`, counted until it is destroyed.
    class Slot {
    public:
        Slot(SourceCounts& counts, std::string key) : counts_(&counts), key_(std::move(key)) { ++counts_->open_[key_]; }
        ~Slot() {
            auto it = counts_->open_.find(key_);
            if (it == counts_->open_.end()) return;
            if (--it->second < counts_->cap_) counts_->capped_.erase(key_);
            if (it->second <= 0) counts_->open_.erase(it);
        }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;

    private:
        SourceCounts* counts_;
        std::string key_;
    };

private:
    int cap_;
    std::map<std::string, int> open_;
    std::set<std::string> capped_;  // full, warned about once until below the cap again
};

// The peer of an accepted connection, as the throttles and SourceCounts key it (IPv4 peers of a
// dual-stack socket as IPv4, a link-local zone dropped); nullopt when it is already gone.
std::optional<IpAddress> peer_address(const boost::asio::ip::tcp::socket& socket);
// For warnings: "192.0.2.7", or "2001:db8::7 (its /64)" (IPv6 sources are counted by /64).
std::string source_name(const IpAddress& source);

// Opens, binds and listens `acceptor` on `listen` ("IP:port", "[v6]:port"); errors name the
// setting it came from ("web.listen: cannot listen on 127.0.0.1:8080: Address already in use").
void listen_on(boost::asio::ip::tcp::acceptor& acceptor, const std::string& setting, const std::string& listen);

// Accepts on `acceptor` until it is closed (or its io_context stops), running serve(socket) for
// each connection: `serve` returns the connection's awaitable (not a coroutine lambda itself: GCC 12
// miscompiled those here). `who` prefixes the warnings ("web console 0.0.0.0:8080").
using ServeConnection = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket)>;
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor, std::string who,
                                         std::size_t max_connections, ServeConnection serve);

}  // namespace dingbridge::agent::events
