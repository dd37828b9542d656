#pragma once
// WebServer: the console's HTTP(S) server (Boost.Beast on its own thread). It owns access
// control and the response headers common to every page, so the pages cannot forget them:
//  * GET and HEAD only (405 otherwise): the console changes nothing;
//  * with web.users, HTTP basic credentials checked against scrypt hashes (proxy/password,
//    the proxy's own hashing); with web.tls.client_ca, a verified client certificate is enough;
//    a successful check is remembered for a few minutes (by a SHA-256 of the header) so that
//    polling does not pay scrypt each second;
//  * Content-Security-Policy without 'unsafe-inline' (scripts and styles from the agent only),
//    frame-ancestors 'none', X-Content-Type-Options nosniff, no-store caching, no referrer.
// Startup problems (bad address, certificate, hash) throw std::runtime_error.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/config.h"

namespace dingbridge::agent::web {

struct WebRequest {
    std::string method, path, query;  // query without '?'
    std::string accept_language;
    std::string user;  // authenticated user or certificate subject; "" when access is open
};

struct WebReply {
    int status = 200;
    std::string content_type = "text/html; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

class WebServer {
public:
    using Handler = std::function<WebReply(const WebRequest&)>;
    WebServer(const AgentConfig::Web& config, Handler handler);
    ~WebServer();
    void start();
    void stop();
    unsigned short port() const;
    bool tls() const;
    struct Impl;  // public for the session coroutines in web_server.cpp

private:
    std::unique_ptr<Impl> impl_;
    std::thread thread_;
};

// The headers every console answer carries (exposed for tests and the docs).
extern const char* const kContentSecurityPolicy;

}  // namespace dingbridge::agent::web
