#pragma once
// TLS for proxy listeners ("HTTPS proxy": clients speak TLS to the proxy, then CONNECT inside):
// the contexts are shared/tls_server.h's; what is proxy-only (libevent) is here.

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

#include "shared/tls_server.h"

struct bufferevent;

namespace dingbridge::proxy {

// Ends our sending side of a TLS client connection with close_notify, once nothing is left to
// write toward the client (false, nothing sent, while output is pending: it would cut data
// short). Non-blocking: a full socket leaves the alert unsent, which the client sees as a dirty
// close, never a hang. Reading from the client goes on.
bool send_close_notify(bufferevent* client);

}  // namespace dingbridge::proxy
