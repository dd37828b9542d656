#pragma once
// TLS server contexts for listeners where clients speak TLS to us: the proxy's HTTPS listeners
// and the agent's web console. Contexts are built while loading configuration, so a reload with a
// broken certificate fails before anything is swapped. Contexts are immutable once built and
// shared between threads.

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

namespace dingbridge {

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

}  // namespace dingbridge
