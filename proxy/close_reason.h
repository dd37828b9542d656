#pragma once
// Why a tunnel ended: one value per cause, its fixed text written to the access log.

namespace dingbridge::proxy {

enum class CloseReason {
    completed,                 // both directions finished
    idle_timeout,              // limits.idle_timeout without any byte moving
    client_error,              // the client connection failed while relaying
    upstream_error,            // the upstream connection failed while relaying
    client_gone,               // the client left while the tunnel was being set up
    client_gone_before_head,   // the client closed before a complete request head
    client_gone_during_check,  // the client left while its password was being checked
    tls_handshake_failed,
    tls_handshake_timeout,
    out_of_memory,
    no_pipe,   // no pipe for the splice relay (descriptors exhausted)
    shutdown,  // still open at the shutdown deadline
    internal_error,
    reply_sent,  // an error reply was sent: the log keeps the reply's reason
};

inline const char* close_reason_text(CloseReason r) {
    switch (r) {
        case CloseReason::completed:
            return "completed";
        case CloseReason::idle_timeout:
            return "idle timeout";
        case CloseReason::client_error:
            return "client connection error";
        case CloseReason::upstream_error:
            return "upstream connection error";
        case CloseReason::client_gone:
            return "client went away";
        case CloseReason::client_gone_before_head:
            return "client closed before sending a complete request";
        case CloseReason::client_gone_during_check:
            return "client went away during the credential check";
        case CloseReason::tls_handshake_failed:
            return "TLS handshake failed";
        case CloseReason::tls_handshake_timeout:
            return "TLS handshake timed out";
        case CloseReason::out_of_memory:
            return "out of memory";
        case CloseReason::no_pipe:
            return "cannot create pipe";
        case CloseReason::shutdown:
            return "shutdown: cut at shutdown_grace";
        case CloseReason::internal_error:
            return "internal error";
        case CloseReason::reply_sent:
            return "error reply sent";
    }
    return "unknown";
}

}  // namespace dingbridge::proxy
