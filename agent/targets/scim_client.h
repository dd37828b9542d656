#pragma once
// ScimClient: SCIM 2.0 requests over libcurl (RFC 7644) for the SCIM target and check-config.
// Certificate verification is always on (target.scim.ca_file or the system bundle); the bearer
// token goes only into the Authorization header and never into a log line or an error message.
// 429 (honouring Retry-After), 500/502/503/504 and network errors are retried with bounded
// exponential backoff; other statuses are returned as they are. A request that creates (POST)
// may have been applied although its answer was lost: send() asks `before_retry` first, which
// looks the resource up, so that a retry never creates it twice. Single-threaded; keeps its
// connections alive between requests.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/targets/scim_settings.h"

namespace dingbridge::agent {

struct ScimRequest {
    std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE
    std::string path;            // below base_url: "/Users?filter=..."
    std::string body;            // JSON for POST/PUT/PATCH
};

struct ScimResponse {
    long status = 0;         // 0 = no HTTP answer (see network_error)
    bool tls_error = false;  // the network error is a TLS handshake or certificate failure
    std::string network_error;
    std::string body;
    int attempts = 0;

    bool ok() const { return status >= 200 && status < 300; }
    // "HTTP 409 uniqueness: userName is taken" from a SCIM error body (RFC 7644 §3.12), or the
    // network error; `what` names the request.
    std::string error(const std::string& what) const;
    std::string scim_type() const;  // the error's scimType ("uniqueness", ...) or ""
};

class ScimClient {
public:
    explicit ScimClient(const ScimSettings& settings);
    ~ScimClient();
    ScimClient(const ScimClient&) = delete;
    ScimClient& operator=(const ScimClient&) = delete;

    // One request, retried as described above. `before_retry` (optional) runs before each retry
    // and returns true when the retry is not needed any more (the create did happen).
    ScimResponse send(const ScimRequest& request, const std::function<bool()>& before_retry = {});
    // Idempotent requests (GETs), up to settings.concurrency at once; answers in request order.
    std::vector<ScimResponse> send_all(const std::vector<ScimRequest>& requests);
    std::uint64_t requests_made() const;
    // After kUnansweredInARow requests in a row got no HTTP answer after all their attempts (the
    // server stopped answering: each costs timeout x max_attempts), send() and send_all() fail at
    // once without sending, so that a run with thousands of changes ends in minutes, not days.
    // reset() (each run's begin) tries the server again.
    static constexpr int kUnansweredInARow = 3;
    void reset();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// URL query encoding of one value (RFC 3986 unreserved characters kept).
std::string scim_url_encode(const std::string& v);
// A resource id the server gave, as one path segment: encoded like a query value, and "." or
// ".." with their dots encoded too, so that no id ("../Users", "x?y", "a/b") sends a request to
// another path than /Users/<id> or /Groups/<id>.
std::string scim_path_segment(const std::string& id);

}  // namespace dingbridge::agent
