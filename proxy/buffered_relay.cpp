#include "proxy/buffered_relay.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <string_view>

#include "proxy/tls.h"

namespace dingbridge::proxy {

BufferedRelay::BufferedRelay(bufferevent* client, bufferevent* upstream, bool tls_client, std::size_t buffer_size,
                             Listener& listener)
    : client_(client), upstream_(upstream), tls_client_(tls_client), buffer_size_(buffer_size), listener_(listener) {}

BufferedRelay::~BufferedRelay() { stop(); }

void BufferedRelay::start(bool client_eof) {
    for (bufferevent* bev : {client_, upstream_}) {
        bufferevent_setcb(bev, &BufferedRelay::on_read, &BufferedRelay::on_write, &BufferedRelay::on_event, this);
        bufferevent_set_max_single_read(bev, buffer_size_);
        bufferevent_set_max_single_write(bev, buffer_size_);
        bufferevent_setwatermark(bev, EV_READ, 0, buffer_size_);
        // Writable callbacks fire when the output falls to half: that resumes a paused reader.
        bufferevent_setwatermark(bev, EV_WRITE, buffer_size_ / 2, 0);
    }
    static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";
    bufferevent_write(client_, kEstablished.data(), kEstablished.size());
    bufferevent_enable(upstream_, EV_READ | EV_WRITE);
    // Bytes the client sent right after the CONNECT head go first.
    if (evbuffer_get_length(bufferevent_get_input(client_)) > 0) move(client_, upstream_);
    if (stopped_) return;
    if (client_eof) {
        peer_eof(client_);
    } else {
        bufferevent_enable(client_, EV_READ);
    }
}

void BufferedRelay::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (tls_client_ && !close_notify_sent_) close_notify_sent_ = proxy::send_close_notify(client_);
    bufferevent_free(client_);
    bufferevent_free(upstream_);
}

std::size_t BufferedRelay::queued() const {
    if (stopped_) return 0;
    std::size_t n = 0;
    for (bufferevent* bev : {client_, upstream_}) {
        n += evbuffer_get_length(bufferevent_get_output(bev)) + socket_send_queue(bufferevent_getfd(bev));
    }
    return n;
}

std::optional<CloseReason> BufferedRelay::stalled_peer_error() {
    if (stopped_) return std::nullopt;
    if (evbuffer_get_length(bufferevent_get_output(client_)) + evbuffer_get_length(bufferevent_get_output(upstream_)) ==
        0)
        return std::nullopt;  // reading both
    return pending_socket_error(bufferevent_getfd(client_), bufferevent_getfd(upstream_));
}

void BufferedRelay::on_read(bufferevent* bev, void* arg) {
    auto* self = static_cast<BufferedRelay*>(arg);
    if (self->stopped_) return;
    if (bev == self->client_) {
        self->move(self->client_, self->upstream_);
    } else {
        self->move(self->upstream_, self->client_);
    }
}

void BufferedRelay::on_write(bufferevent* bev, void* arg) {
    auto* self = static_cast<BufferedRelay*>(arg);
    if (!self->stopped_) self->drained(bev);
}

void BufferedRelay::on_event(bufferevent* bev, short what, void* arg) {
    auto* self = static_cast<BufferedRelay*>(arg);
    if (self->stopped_) return;
    if (what & BEV_EVENT_EOF) {
        self->peer_eof(bev);
    } else if (what & BEV_EVENT_ERROR) {
        self->fail(bev == self->client_ ? CloseReason::client_error : CloseReason::upstream_error);
    }
}

void BufferedRelay::move(bufferevent* from, bufferevent* to) {
    evbuffer* in = bufferevent_get_input(from);
    evbuffer* out = bufferevent_get_output(to);
    const std::size_t n = evbuffer_get_length(in);
    if (n == 0) return;
    listener_.relay_progress(from == client_, n);
    evbuffer_add_buffer(out, in);
    // Backpressure: the receiving side is slower; stop reading until it drains to half.
    if (evbuffer_get_length(out) >= buffer_size_) bufferevent_disable(from, EV_READ);
}

void BufferedRelay::drained(bufferevent* to) {
    listener_.relay_progress(to == upstream_, 0);  // the receiver took bytes: not idle
    bufferevent* from = to == client_ ? upstream_ : client_;
    const bool from_eof = from == client_ ? client_eof_ : upstream_eof_;
    const std::size_t pending = evbuffer_get_length(bufferevent_get_output(to));
    if (!from_eof) {
        if (pending <= buffer_size_ / 2) bufferevent_enable(from, EV_READ);
        return;
    }
    if (pending != 0) return;
    bool& shut = to == upstream_ ? client_shut_ : upstream_shut_;
    if (!shut) {
        shut = true;
        if (to == client_ && tls_client_) {
            // TLS half-close: close_notify ends the download; the client's upload goes on until
            // it ends its side (a TCP FIN without close_notify is taken as its end).
            close_notify_sent_ = proxy::send_close_notify(client_);
        } else {
            // Half-close: the peer finished sending and everything reached `to`; pass the FIN on.
            shutdown(bufferevent_getfd(to), SHUT_WR);
        }
    }
    if (client_shut_ && upstream_shut_) {
        stop();
        listener_.relay_finished(CloseReason::completed);
    }
}

void BufferedRelay::peer_eof(bufferevent* from) {
    (from == client_ ? client_eof_ : upstream_eof_) = true;
    listener_.relay_progress(from == client_, 0);
    // Move whatever is still in the input, then forward the FIN when the output drains.
    bufferevent* to = from == client_ ? upstream_ : client_;
    move(from, to);
    drained(to);
}

void BufferedRelay::fail(CloseReason reason) {
    stop();
    listener_.relay_finished(reason);
}

}  // namespace dingbridge::proxy
