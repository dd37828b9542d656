#pragma once
// Why a tunnel ended: one value per cause, its fixed text written to the access log.

#include "shared/enum_table.h"

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

inline constexpr auto kCloseReasonTexts = enum_table<CloseReason::reply_sent>(
    {"completed", "idle timeout", "client connection error", "upstream connection error", "client went away",
     "client closed before sending a complete request", "client went away during the credential check",
     "TLS handshake failed", "TLS handshake timed out", "out of memory", "cannot create pipe",
     "shutdown: cut at shutdown_grace", "internal error", "error reply sent"});

inline const char* close_reason_text(CloseReason r) { return kCloseReasonTexts.get(r, "unknown"); }

}  // namespace dingbridge::proxy
