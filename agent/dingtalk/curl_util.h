#pragma once
// The libcurl pieces every HTTP client of the agent needs (DingTalk's and the SCIM target's): one
// process-wide curl_global_init, a write callback that appends the body to a std::string, and
// the options both set on every request.

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace dingbridge::agent {

// Call before the first curl_easy_init; runs curl_global_init once per process.
inline void curl_global_once() {
    static const bool done = (curl_global_init(CURL_GLOBAL_DEFAULT), true);
    (void)done;
}

// CURLOPT_WRITEFUNCTION with CURLOPT_WRITEDATA pointing at a std::string.
inline std::size_t curl_append_body(char* data, std::size_t size, std::size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
}

// Timeouts, TCP keep-alive, any content encoding, the agent's User-Agent, and the answer's body
// appended to `body`.
inline void curl_common_options(CURL* e, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds timeout,
                                std::string* body) {
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "dingbridge-agent/0.1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, curl_append_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
}

}  // namespace dingbridge::agent
