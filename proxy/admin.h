#pragma once
// The admin endpoint of dingbridge-proxy: a small HTTP server on its own listener and thread
// (loopback in the example config) serving GET /metrics (Prometheus text) and GET /healthz
// (200 "ok", or 503 "draining" during shutdown). Nothing else; no request body is read.

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <string>
#include <thread>

#include "proxy/worker.h"
#include "shared/log.h"

namespace dingbridge::proxy {

// Prometheus and health checks need a few; an idle client holds one for up to evhttp's 10 s timeout.
inline constexpr unsigned kMaxAdminConnections = 64;

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
    // At most kMaxAdminConnections are served at once: libevent 2.1's evhttp has no limit, so each
    // connection is counted as evhttp creates its bufferevent and released from evhttp's close
    // callback; at the limit the listener stops accepting and the kernel's backlog holds the rest.
    static bufferevent* on_new_connection(event_base* base, void* arg);
    static void watch_connection(evutil_socket_t, short, void* arg);
    static void on_connection_closed(evhttp_connection* connection, void* arg);
    void update_listener();

    SharedState& shared_;
    event_base* base_ = nullptr;
    evhttp* http_ = nullptr;
    evconnlistener* listener_ = nullptr;  // evhttp's, for the pause
    event* resume_accept_ = nullptr;
    ThrottledWarning accept_failed_;  // on the admin thread
    ThrottledWarning at_limit_;       // on the admin thread
    unsigned open_ = 0;               // connections served now (admin thread)
    bool paused_ = false;             // out of descriptors: resume_accept_ is armed
    std::string bound_;
    std::thread thread_;
};

}  // namespace dingbridge::proxy
