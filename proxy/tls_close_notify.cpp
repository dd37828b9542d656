// send_close_notify (proxy/tls.h) on its own: it is the one libevent-bound piece of the TLS
// helpers, and the agent's web console compiles tls.cpp without linking libevent.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "proxy/tls.h"

namespace dingbridge::proxy {

bool send_close_notify(bufferevent* client) {
    if (client == nullptr || evbuffer_get_length(bufferevent_get_output(client)) != 0) return false;
    SSL* ssl = bufferevent_openssl_get_ssl(client);
    if (ssl != nullptr && SSL_is_init_finished(ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl);
        ERR_clear_error();
    }
    return true;
}

}  // namespace dingbridge::proxy
