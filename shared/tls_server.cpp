#include "shared/tls_server.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <stdexcept>

namespace dingbridge {

namespace {

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

}  // namespace

std::shared_ptr<SSL_CTX> make_server_context(const TlsSettings& s) {
    std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!ctx) throw std::runtime_error("cannot create TLS context: " + openssl_error());
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Small buffers per connection: release read/write buffers when idle.
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), s.certificate.c_str()) != 1) {
        throw std::runtime_error("cannot load certificate " + s.certificate + ": " + openssl_error());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), s.key.c_str(), SSL_FILETYPE_PEM) != 1) {
        throw std::runtime_error("cannot load private key " + s.key + ": " + openssl_error());
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
        throw std::runtime_error("private key " + s.key + " does not match certificate " + s.certificate);
    }
    if (!s.client_ca.empty()) {
        if (SSL_CTX_load_verify_locations(ctx.get(), s.client_ca.c_str(), nullptr) != 1) {
            throw std::runtime_error("cannot load client CA " + s.client_ca + ": " + openssl_error());
        }
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.client_ca.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.get(), names);
        SSL_CTX_set_verify(
            ctx.get(), SSL_VERIFY_PEER | (s.require_client_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
        SSL_CTX_set_verify_depth(ctx.get(), 4);
        // Without a session id context OpenSSL refuses to resume a session on a context that
        // verifies peers (SSL_R_SESSION_ID_CONTEXT_UNINITIALIZED, an internal_error alert): every
        // client that caches sessions (curl with several URLs, Java, Go) failed its second
        // handshake. Each context (each listener, each reload) has its own ticket keys and cache,
        // so a session resumes only where it was made, with the peer certificate it was verified with.
        static constexpr unsigned char kSessionContext[] = "dingbridge";
        SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1);
    }
    return ctx;
}

std::optional<std::string> verified_peer_subject(SSL* ssl) {
    if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr) return std::nullopt;
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr) return std::nullopt;
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);
    std::string subject(data, static_cast<std::size_t>(len));
    BIO_free(bio);
    return subject;
}

}  // namespace dingbridge
