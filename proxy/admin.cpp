#include "proxy/admin.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "shared/net.h"

namespace dingbridge::proxy {

namespace {
thread_local AdminServer* t_admin = nullptr;  // the server whose loop this thread runs
}  // namespace

AdminServer::AdminServer(const std::string& address, SharedState& shared) : shared_(shared) {
    try {
        listen_on(address);
    } catch (...) {
        // No destructor runs for a constructor that throws: a busy admin port left the event
        // base and the HTTP server behind (LeakSanitizer at the proxy's exit).
        free_loop();
        throw;
    }
}

void AdminServer::listen_on(const std::string& address) {
    // The configuration accepts only ip:port or [ipv6]:port (config.cpp), so the socket is bound
    // here rather than by evhttp: a failure says why (e.g. address in use), and the backlog is ours.
    const auto hp = split_host_port(address, true);
    const auto ip = hp ? IpAddress::parse(hp->host) : std::nullopt;
    if (!ip) throw std::runtime_error("invalid admin address " + address + ": must be ip:port or [ipv6]:port");
    const std::uint16_t port = hp->port;
    base_ = event_base_new();
    http_ = evhttp_new(base_);
    if (!base_ || !http_) throw std::runtime_error("cannot create admin HTTP server");
    evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(http_, 8192);
    evhttp_set_max_body_size(http_, 0);
    evhttp_set_timeout(http_, 10);
    evhttp_set_gencb(http_, &AdminServer::on_request, this);
    evhttp_set_bevcb(http_, &AdminServer::on_new_connection, this);
    const SocketAddress want = SocketAddress::of(*ip, port);
    const int fd = socket(want.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, want.get(), want.length) != 0 || ::listen(fd, kAdminBacklog) != 0) {
        const int err = errno;
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot listen on admin address " + address + ": " + std::strerror(err));
    }
    evhttp_bound_socket* sock = evhttp_accept_socket_with_handle(http_, fd);
    if (sock == nullptr) {
        ::close(fd);
        throw std::runtime_error("cannot listen on admin address " + address);
    }
    listener_ = evhttp_bound_socket_get_listener(sock);
    resume_accept_ = evtimer_new(base_, &AdminServer::on_resume_accept, this);
    if (!resume_accept_) throw std::runtime_error("cannot create admin HTTP server");
    evconnlistener_set_error_cb(listener_, &AdminServer::on_accept_error);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    const std::uint16_t bound_port = port_of(reinterpret_cast<sockaddr*>(&ss));
    bound_ = (ip->is_v4() ? ip->to_string() : "[" + ip->to_string() + "]") + ":" + std::to_string(bound_port);
    thread_ = std::thread([this] {
        t_admin = this;
        event_base_dispatch(base_);
    });
}

AdminServer::~AdminServer() {
    if (base_) event_base_loopexit(base_, nullptr);
    if (thread_.joinable()) thread_.join();
    free_loop();
}

void AdminServer::free_loop() {
    if (resume_accept_) event_free(std::exchange(resume_accept_, nullptr));
    if (http_) evhttp_free(std::exchange(http_, nullptr));  // with its bound socket
    if (base_) event_base_free(std::exchange(base_, nullptr));
}

void AdminServer::on_accept_error(evconnlistener* listener, void*) {
    // The listener's argument is evhttp's own; this thread runs only this server's loop.
    AdminServer* self = t_admin;
    const int err = EVUTIL_SOCKET_ERROR();
    if (self && accept_out_of_resources(err)) {
        self->accept_failed_.warn("admin: accept failed ({}); pausing new connections for 100 ms", std::strerror(err));
        evconnlistener_disable(listener);
        timeval tv{0, 100 * 1000};
        evtimer_add(self->resume_accept_, &tv);
        return;
    }
    if (self) self->accept_failed_.warn("admin: accept failed: {}", std::strerror(err));
}

void AdminServer::on_resume_accept(evutil_socket_t, short, void* arg) {
    evconnlistener_enable(static_cast<AdminServer*>(arg)->listener_);
}

bufferevent* AdminServer::on_new_connection(event_base* base, void*) {
    // What evhttp makes itself without this callback.
    bufferevent* bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) return nullptr;  // evhttp tries once more, untracked (out of memory)
    // evhttp makes its connection the bufferevent's callback argument after this returns: look it
    // up in a moment, in this loop turn. The extra reference keeps the bufferevent valid until
    // then, even if evhttp drops the connection at once.
    bufferevent_incref(bev);
    if (event_base_once(base, -1, EV_TIMEOUT, &AdminServer::watch_connection, bev, nullptr) != 0) {
        bufferevent_decref(bev);  // served, untracked (out of memory)
    }
    return bev;
}

void AdminServer::watch_connection(evutil_socket_t, short, void* arg) {
    auto* bev = static_cast<bufferevent*>(arg);
    bufferevent_event_cb event_cb = nullptr;
    void* connection = nullptr;
    bufferevent_getcb(bev, nullptr, nullptr, &event_cb, &connection);
    bufferevent_decref(bev);
    AdminServer* self = t_admin;
    // Freed by evhttp already: bufferevent_free cleared its callbacks.
    if (self == nullptr || event_cb == nullptr || connection == nullptr) return;
    auto* evcon = static_cast<evhttp_connection*>(connection);
    // Every way evhttp ends a server connection runs this (evhttp_connection_free, or the reset
    // before it), so no pointer in connections_ outlives its connection.
    evhttp_connection_set_closecb(evcon, &AdminServer::on_connection_closed, self);
    self->connections_.push_back(evcon);
    if (self->connections_.size() > kMaxAdminConnections) {
        evhttp_connection* oldest = self->connections_.front();
        self->connections_.pop_front();
        evhttp_connection_set_closecb(oldest, nullptr, nullptr);
        self->at_limit_.warn("admin: {} connections open, the most kept; closing the oldest for a new one",
                             kMaxAdminConnections);
        evhttp_connection_free(oldest);  // as evhttp_free does, from a callback of the loop itself
    }
}

void AdminServer::on_connection_closed(evhttp_connection* connection, void* arg) {
    auto& open = static_cast<AdminServer*>(arg)->connections_;
    for (auto it = open.begin(); it != open.end(); ++it) {
        if (*it == connection) {
            open.erase(it);
            return;
        }
    }
}

void AdminServer::on_request(evhttp_request* req, void* arg) {
    auto* self = static_cast<AdminServer*>(arg);
    const char* uri = evhttp_request_get_uri(req);
    std::string path = uri ? uri : "";
    if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
    evbuffer* out = evbuffer_new();
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    if (path == "/metrics") {
        const std::string body = self->shared_.metrics.render_prometheus();
        evbuffer_add(out, body.data(), body.size());
        evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (path == "/healthz") {
        evhttp_add_header(headers, "Content-Type", "text/plain");
        if (self->shared_.draining.load()) {
            evbuffer_add_printf(out, "draining\n");
            evhttp_send_reply(req, 503, "Service Unavailable", out);
        } else {
            evbuffer_add_printf(out, "ok\n");
            evhttp_send_reply(req, 200, "OK", out);
        }
    } else {
        evhttp_add_header(headers, "Content-Type", "text/plain");
        evbuffer_add_printf(out, "not found (try /metrics or /healthz)\n");
        evhttp_send_reply(req, 404, "Not Found", out);
    }
    evbuffer_free(out);
}

}  // namespace dingbridge::proxy
