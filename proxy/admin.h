#pragma once
// The admin endpoint of dingbridge-proxy: a small HTTP server on its own listener and thread
// (loopback in the example config) serving GET /metrics (Prometheus text) and GET /healthz
// (200 "ok", or 503 "draining" during shutdown). Nothing else; no request body is read.

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <deque>
#include <string>
#include <thread>

#include "proxy/worker.h"
#include "shared/log.h"

namespace dingbridge::proxy {

// Under half the limit: libevent accepts the whole backlog in one turn, before it reads any of
// those connections, so a larger backlog lets one turn's newest close its oldest (a health check
// among them) unanswered. Under a flood of about 850-3,600 new connections a second, 0-1 of
// about 230 health checks failed with 32, 12-51 with 128 (docs/BENCHMARKS.md).
inline constexpr int kAdminBacklog = 32;

class AdminServer {
public:
    // Binds `address` ("ip:port", port 0 allowed); throws std::runtime_error when it cannot.
    AdminServer(const std::string& address, SharedState& shared);
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    const std::string& bound_address() const { return bound_; }

private:
    static void on_request(evhttp_request* req, void* arg);
    // Out of descriptors, evhttp's listener would retry accept at once, for ever (one warning a
    // turn): it pauses 100 ms instead, like the workers' listeners.
    static void on_accept_error(evconnlistener* listener, void* arg);
    static void on_resume_accept(evutil_socket_t, short, void* arg);
    // At most kMaxAdminConnections are kept: libevent 2.1's evhttp has no limit, so the server
    // tracks them itself (each found when evhttp makes its bufferevent, dropped from evhttp's close
    // callback), and a new connection beyond the limit closes the oldest one. Not a pause: a
    // client sending a byte every few seconds would hold a paused port for hours, health checks
    // waiting behind it; closing the oldest serves a new request at once.
    static bufferevent* on_new_connection(event_base* base, void* arg);
    static void watch_connection(evutil_socket_t, short, void* arg);
    static void on_connection_closed(evhttp_connection* connection, void* arg);
    // The constructor's work: everything it creates is freed by free_loop(), also when it throws.
    void listen_on(const std::string& address);
    void free_loop();

    SharedState& shared_;
    event_base* base_ = nullptr;
    evhttp* http_ = nullptr;
    evconnlistener* listener_ = nullptr;  // evhttp's, for the pause
    event* resume_accept_ = nullptr;
    ThrottledWarning accept_failed_;              // on the admin thread
    ThrottledWarning at_limit_;                   // on the admin thread
    std::deque<evhttp_connection*> connections_;  // open ones, oldest first (admin thread)
    std::string bound_;
    std::thread thread_;
};

}  // namespace dingbridge::proxy
