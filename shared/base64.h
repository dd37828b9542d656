#pragma once
// Base64, standard alphabet with padding (RFC 4648 §4): one implementation for HTTP Basic
// credentials (proxy, console), password hashes and DingTalk's callback crypto. Decoding is
// strict: the length must be a multiple of 4, padding only at the end, nothing outside the
// alphabet (no whitespace) — what arrives here is untrusted (fuzzed by request_head_fuzz).

#include <optional>
#include <string>
#include <string_view>

namespace dingbridge {

std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace dingbridge
