#pragma once
// The buffered relay: bytes move through the client's and the upstream's bufferevents (a TLS
// client's bufferevent decrypts and encrypts), at most `buffer_size` queued per direction before
// the sender is paused until the receiver drains to half. Used for TLS clients, for clients that
// sent bytes right after the CONNECT head, and when `relay: buffered` is configured.
//
// Half-closes are forwarded once everything queued reached the receiver: a TCP FIN, or toward a
// TLS client a close_notify (its upload goes on until it ends its side). Takes ownership of both
// bufferevents; `stop()` sends a pending close_notify and frees them.

#include <event2/bufferevent.h>
#include <event2/event.h>

#include <cstddef>
#include <cstdint>

#include "proxy/relay.h"

namespace dingbridge::proxy {

class BufferedRelay final : public Relay {
public:
    BufferedRelay(bufferevent* client, bufferevent* upstream, bool tls_client, std::size_t buffer_size,
                  Listener& listener);
    ~BufferedRelay() override;
    BufferedRelay(const BufferedRelay&) = delete;
    BufferedRelay& operator=(const BufferedRelay&) = delete;

    // Sends the 200, moves bytes the client sent early, and forwards a FIN the client sent
    // while the tunnel was being set up (`client_eof`).
    void start(bool client_eof);
    void stop() override;
    std::size_t queued() const override;
    std::optional<CloseReason> stalled_peer_error() override;

private:
    static void on_read(bufferevent* bev, void* arg);
    static void on_write(bufferevent* bev, void* arg);
    static void on_event(bufferevent* bev, short what, void* arg);

    void move(bufferevent* from, bufferevent* to);
    void drained(bufferevent* to);
    void peer_eof(bufferevent* from);
    void fail(CloseReason reason);

    bufferevent* client_;
    bufferevent* upstream_;
    bool tls_client_;
    std::size_t buffer_size_;
    Listener& listener_;
    bool stopped_ = false;
    bool client_eof_ = false;     // client → upstream direction: client sent FIN
    bool upstream_eof_ = false;   // upstream → client direction: upstream sent FIN
    bool client_shut_ = false;    // we shut down writing toward upstream
    bool upstream_shut_ = false;  // we shut down writing toward client
    bool close_notify_sent_ = false;
};

}  // namespace dingbridge::proxy
