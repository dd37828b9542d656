#pragma once
// The upstream side of a tunnel's setup: resolve the destination (IP literals skip the resolver),
// then try each address in turn through the SSRF guard (the tenant's deny networks, decided on the
// resolved address), the loop guard (never our own listeners), the egress bind
// (`outgoing.bind_address`) and a non-blocking connect bounded by `connect_timeout`.
//
// Owned by one Tunnel, on its worker's thread. It reports exactly once: `upstream_connected`
// (handing over the connected bufferevent, always from an event callback) or `upstream_failed`
// (possibly from inside start()). `cancel()` stops everything; a DNS lookup already sent reports
// back later (evdns cancellation is asynchronous), then `lookup_released` tells the owner that
// the object may go. The owner deletes it only after success or from its own destructor.

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "proxy/config.h"
#include "proxy/metrics.h"
#include "shared/net.h"

namespace dingbridge::proxy {

class Worker;

class UpstreamConnector {
public:
    enum class Failure {
        name_not_resolved,  // 502
        lookup_timeout,     // 504
        loop,               // 403: every allowed address is one of our own listeners
        denied_network,     // 403: every address is in a denied network
        no_usable_address,  // 502: e.g. no egress address of the family
        connect_timeout,    // 504: the last address tried did not answer
        connect_failed,     // 502
        lookups_busy,       // 503: the tenant holds its share of this worker's lookups in flight
    };

    class Listener {
    public:
        virtual void upstream_connected(bufferevent* upstream) = 0;  // takes ownership
        virtual void upstream_failed(Failure why) = 0;
        virtual void lookup_released() = 0;  // a cancelled lookup has reported back

    protected:
        ~Listener() = default;
    };

    UpstreamConnector(Worker& worker, std::shared_ptr<const ProxyConfig> config, const Tenant& tenant, std::string host,
                      std::uint16_t port, Listener& listener);
    ~UpstreamConnector();
    UpstreamConnector(const UpstreamConnector&) = delete;
    UpstreamConnector& operator=(const UpstreamConnector&) = delete;

    void start();
    void cancel();  // idempotent
    bool lookup_pending() const { return lookup_pending_; }
    // The address tried last (or the one refused), for the access log.
    const std::string& resolved_ip() const { return resolved_ip_; }
    std::chrono::steady_clock::time_point connect_started() const { return connect_started_; }

private:
    static void on_resolved(int result, evutil_addrinfo* addresses, void* arg);
    static void on_event(bufferevent* bev, short what, void* arg);
    static void on_timer(evutil_socket_t, short, void* arg);

    void begin_lookup();
    void try_next_address();
    // Checks one address against the guards; false when it must be skipped.
    bool usable(const evutil_addrinfo& ai);
    bool connect_to(const evutil_addrinfo& ai);  // false when the attempt could not start
    int open_socket(const evutil_addrinfo& ai);  // -1 on failure (reason recorded)
    void fail(Failure why);
    void arm_timer(std::chrono::milliseconds after);
    void free_upstream();

    Worker& worker_;
    std::shared_ptr<const ProxyConfig> config_;
    const Tenant& tenant_;
    std::string host_;
    std::uint16_t port_;
    Listener& listener_;

    event* timer_ = nullptr;
    bufferevent* upstream_ = nullptr;
    evdns_getaddrinfo_request* lookup_ = nullptr;
    bool lookup_pending_ = false;
    bool lookup_counted_ = false;           // counted in the worker's lookups of the tenant until it reports
    bool done_ = false;                     // reported or cancelled
    evutil_addrinfo* addresses_ = nullptr;  // from evdns, freed with evutil_freeaddrinfo
    evutil_addrinfo literal_info_{};        // an IP-literal target: no resolver involved
    SocketAddress literal_address_;
    evutil_addrinfo* next_ = nullptr;
    bool any_denied_ = false;
    bool any_allowed_ = false;
    bool any_loop_ = false;
    bool timed_out_ = false;      // the last attempt failed by connect_timeout
    bool any_attempted_ = false;  // a connect was started or a socket/bind failed
    std::string resolved_ip_;
    std::chrono::steady_clock::time_point connect_started_;
};

// What the client is told when the upstream could not be reached (pure; fixed texts). Refusals
// by policy also count as a denial.
struct ConnectFailureReply {
    std::optional<Denial> denial;
    int status;
    const char* reason;
};
ConnectFailureReply connect_failure_reply(UpstreamConnector::Failure why);

}  // namespace dingbridge::proxy
