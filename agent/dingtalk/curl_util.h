#pragma once
// The two libcurl pieces every HTTP client of the agent needs (DingTalk's and the SCIM target's):
// one process-wide curl_global_init, and a write callback that appends the body to a std::string.

#include <curl/curl.h>

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

}  // namespace dingbridge::agent
