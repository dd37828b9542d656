#pragma once
// What a tunnel's relay phase looks like from the Tunnel: bytes move both ways until both
// directions are done (half-closes forwarded) or one side fails. Two implementations: SocketRelay
// (plain tunnels, socket to socket through a buffer or a pipe) and BufferedRelay (TLS clients and clients that sent
// bytes before the 200, through the two bufferevents). Both run on the worker's thread, report
// through Relay::Listener, and are deleted with their tunnel, never inside their own callbacks.

#include <cstddef>
#include <optional>

#include "proxy/close_reason.h"

namespace dingbridge::proxy {

class Relay {
public:
    class Listener {
    public:
        // `bytes` were accepted from one side (0: a receiver took queued bytes; still activity).
        virtual void relay_progress(bool upstream_bound, std::size_t bytes) = 0;
        // Both directions finished (CloseReason::completed) or an error ended the tunnel.
        virtual void relay_finished(CloseReason reason) = 0;

    protected:
        ~Listener() = default;
    };

    virtual ~Relay() = default;
    virtual void stop() = 0;  // idempotent: detaches events, closes both sockets
    // Bytes accepted but not yet taken by a receiver (buffers, pipes, stages and both sockets' send
    // queues). The idle timer uses it to tell a slow receiver still draining from a dead tunnel.
    virtual std::size_t queued() const = 0;
    // While bytes wait for a receiver the relay does not read their sender, so a sender's reset
    // would go unseen until idle_timeout: the tunnel's timer asks here now and then. Returns
    // the error that ended a connection (a reset), if any, and only while some bytes wait;
    // nothing otherwise.
    virtual std::optional<CloseReason> stalled_peer_error() = 0;
    // The tunnel's timer calls this every relay check interval (with stalled_peer_error): the
    // relay can tell what stayed quiet for a whole interval.
    virtual void tick() {}
};

// Unsent bytes in a TCP socket's send queue (SIOCOUTQ); 0 when unknown.
std::size_t socket_send_queue(int fd);
// client_error or upstream_error when that socket has a hard error pending (a reset: POLLERR).
std::optional<CloseReason> pending_socket_error(int client_fd, int upstream_fd);

}  // namespace dingbridge::proxy
