#pragma once
// HttpTransport: libcurl multi interface driven from the caller's loop. Up to `max_in_flight`
// transfers run at once over a connection cache that keeps connections (and their CONNECT
// tunnels through the proxy) alive between requests. Certificate verification is always on.
// Owns its curl handles; single-threaded: submit() and poll() from one thread only; completion
// callbacks run inside poll(). Never logs URLs (they carry the access token).

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace dingbridge::agent::dingtalk {

struct TransportSettings {
    std::string proxy_url;       // http://host:port or https://host:port; empty = direct
    std::string proxy_username;  // Basic credentials for the proxy
    std::string proxy_password;  // secret
    std::string proxy_ca_file;   // CA for an https:// proxy
    std::string ca_file;         // CA bundle for DingTalk (empty = system bundle)
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds request_timeout{30000};
    int max_in_flight = 4;
};

struct HttpResponse {
    int curl_code = 0;        // CURLE_OK = 0
    std::string curl_error;   // curl's message (no URL)
    long status = 0;          // HTTP status of the final response
    long connect_status = 0;  // the proxy's answer to CONNECT (0 when direct)
    std::string body;
    std::string request_id_header;  // x-acs-request-id when present
};

struct HttpRequest {
    std::string method = "POST";  // GET or POST
    std::string url;
    std::string body;  // JSON for POST
};

class HttpTransport {
public:
    explicit HttpTransport(TransportSettings settings);
    ~HttpTransport();
    HttpTransport(const HttpTransport&) = delete;
    HttpTransport& operator=(const HttpTransport&) = delete;

    void submit(HttpRequest request, std::function<void(HttpResponse&&)> done);
    // Waits up to `max_wait` for activity and runs completion callbacks.
    void poll(std::chrono::milliseconds max_wait);
    int in_flight() const;
    int max_in_flight() const;
    std::uint64_t requests_made() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dingbridge::agent::dingtalk
