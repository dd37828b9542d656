#pragma once
// One client connection of dingbridge-proxy, from accept to close (ARCHITECTURE.md, request path).
//
// A Tunnel owns the client socket, its timer, the UpstreamConnector while connecting (lookup,
// address guards, connect) and then the relay (SocketRelay, or buffered through both bufferevents). It
// moves through: reading_head → (verifying) → connecting → relaying → closed; the phases'
// work lives in those units and in the pure reply/log-line functions (reply.h).
// All callbacks run on the owning Worker's event loop thread and receive only the Tunnel.
// `close(CloseReason)` is idempotent: it frees the sockets, writes the access-log line and hands the object
// to the worker, which deletes it from a zero-delay event (never inside a callback), and only
// once an in-flight DNS lookup has reported back (evdns_getaddrinfo_cancel is asynchronous).

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "proxy/config.h"
#include "proxy/metrics.h"
#include "proxy/socket_relay.h"
#include "proxy/upstream_connector.h"
#include "shared/net.h"

namespace dingbridge::proxy {

class Worker;

class Tunnel final : private Relay::Listener, private UpstreamConnector::Listener {
public:
    Tunnel(Worker& worker, std::shared_ptr<const ProxyConfig> config, evutil_socket_t fd, const sockaddr* source,
           unsigned listener_index);
    ~Tunnel();
    Tunnel(const Tunnel&) = delete;
    Tunnel& operator=(const Tunnel&) = delete;

    void start();
    // Closes the tunnel now (access-log line with the reason): the shutdown deadline passed.
    void cut_at_shutdown() { close(CloseReason::shutdown); }
    bool waiting_for_dns() const { return connector_ && connector_->lookup_pending(); }
    bool reapable() const { return state_ == State::closed && !waiting_for_dns() && !verify_pending_; }
    // A throttled reply held for reply_delay goes out now (its timer, or the proxy stops accepting:
    // draining need not wait for it). Nothing otherwise.
    void end_reply_delay();

private:
    // handshaking: TLS listener only. replying: an error reply is being written, then we close.
    // verifying: the password check runs on the verification pool; its result is posted back.
    // delaying: a throttled client's 429 waits out auth_failures.reply_delay, reading off.
    enum class State { handshaking, reading_head, verifying, delaying, connecting, relaying, replying, closed };

    static void on_client_read(bufferevent* bev, void* arg);
    static void on_client_write(bufferevent* bev, void* arg);
    static void on_client_event(bufferevent* bev, short what, void* arg);
    static void on_timer(evutil_socket_t, short, void* arg);

    void handshake_done();
    void handle_head();
    void authenticated(const AuthResult& auth);  // continues once the tenant is known (or refused)
    // `key`: check_key of the credentials; requests that bring the same ones meanwhile wait for
    // this check (Worker::waiting_for_check) and get its verdict.
    void start_password_check(AuthResult pending, std::string password, std::string key);
    void password_checked(AuthResult pending, bool ok, const std::string& key);
    void check_done(const AuthResult& auth, int wait);  // the verdict of the check it waited for
    // The check was dropped unrun for another tenant's (VerifierPool): it and those waiting for
    // it get 503, as if the queue had been full when it came.
    void check_evicted(const std::string& key);
    void wait_for_check();  // reading off until check_done
    std::string check_key(const std::string& user, const std::string& password) const;
    // Ends the throttle's count of this request's credential attempt with the verdict of `auth`;
    // the seconds to wait when a success came while a block applies (answer 429), else 0.
    int end_auth_attempt(const std::string* name, const AuthResult& auth);
    bool admit();          // per-tenant tunnel and rate limits; replies 429 itself when refusing
    void begin_connect();  // resolve, guard and connect through the UpstreamConnector
    void upstream_connected(bufferevent* upstream) override;
    void upstream_failed(UpstreamConnector::Failure why) override;
    void lookup_released() override;
    // Plain tunnels relay between the two sockets (copy or splice) once established; TLS clients (and tunnels whose
    // client sent early data) use the BufferedRelay. Both report through Relay::Listener.
    bool start_socket_relay(bufferevent* upstream);  // false: not possible, nothing changed
    void relay_progress(bool upstream_bound, std::size_t bytes) override;
    void relay_finished(CloseReason reason) override;
    void arm_timer(std::chrono::milliseconds after);

    // Sends a fixed error reply, then closes once it is written. `retry_after` > 0 adds Retry-After.
    void reply_error(int status, const char* reason, int retry_after = 0);
    void deny(Denial why, int status, const char* reason, int retry_after = 0);
    void deny_throttled(int retry_after);  // 429 after throttled_reply_delay while slots last
    void close(CloseReason why);
    void release_source_slot();  // once admitted or closed: no longer one of its source's unauthorised
    void write_access_log();

    Worker& worker_;
    std::shared_ptr<const ProxyConfig> config_;
    State state_ = State::reading_head;
    bufferevent* client_ = nullptr;
    std::unique_ptr<Relay> relay_;  // owns both connections while relaying
    event* timer_ = nullptr;

    IpAddress source_ip_;
    std::uint16_t source_port_ = 0;
    std::string host_;
    std::uint16_t port_ = 0;
    std::uint16_t delayed_retry_after_ = 0;  // the held 429's Retry-After (State::delaying)
    unsigned listener_index_ = 0;
    bool tls_client_ = false;
    const Tenant* tenant_ = nullptr;
    TenantRuntime* runtime_ = nullptr;  // set once the tenant is admitted; counts an active tunnel
    std::string user_;
    std::string client_subject_;

    std::unique_ptr<UpstreamConnector> connector_;  // while connecting (and until a cancelled lookup reports)
    bool verify_pending_ = false;                   // a verification job holds a pointer to this tunnel
    bool holds_source_slot_ = true;                 // counted in SharedState::unauthorised (source_slots.h)
    bool sent_credentials_ = false;
    std::string resolved_ip_;

    bool client_eof_ = false;  // the client sent FIN while the tunnel was being set up
    static constexpr std::size_t kNoSample = static_cast<std::size_t>(-1);
    std::size_t last_waiting_ = kNoSample;  // relay_->queued() at the last relay check

    int status_ = 0;
    std::uint32_t head_scanned_ = 0;  // bytes of the head searched for its end so far (in padding)
    const char* reason_ = "";
    std::uint64_t bytes_up_ = 0;    // client → upstream
    std::uint64_t bytes_down_ = 0;  // upstream → client
    std::chrono::steady_clock::time_point accepted_at_;
    std::chrono::steady_clock::time_point established_at_;
    std::chrono::steady_clock::time_point last_activity_;
    std::chrono::steady_clock::time_point connect_started_;
};

}  // namespace dingbridge::proxy
