#pragma once
// TLS for proxy listeners ("HTTPS proxy": clients speak TLS to the proxy, then CONNECT inside).
// Contexts are built while loading configuration, so a reload with a broken certificate fails
// before anything is swapped. Contexts are immutable once built and shared between threads.

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

struct bufferevent;

namespace dingbridge::proxy {

struct TlsSettings {
    std::string certificate;                 // PEM chain
    std::string key;                         // PEM private key
    std::string client_ca;                   // PEM CAs for client certificates; empty = no client certificates
    bool require_client_certificate = true;  // only with client_ca
};

// Throws std::runtime_error with OpenSSL's reason when a file is missing or does not match.
std::shared_ptr<SSL_CTX> make_server_context(const TlsSettings& settings);

// RFC 2253 subject of the verified peer certificate, or nullopt when there is none.
std::optional<std::string> verified_peer_subject(SSL* ssl);

// Ends our sending side of a TLS client connection with close_notify, once nothing is left to
// write toward the client (false, nothing sent, while output is pending: it would cut data
// short). Non-blocking: a full socket leaves the alert unsent, which the client sees as a dirty
// close, never a hang. Reading from the client goes on.
bool send_close_notify(bufferevent* client);

}  // namespace dingbridge::proxy
