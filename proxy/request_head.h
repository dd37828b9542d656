#pragma once
// Strict parser for the head of a proxy request (RFC 9110 §9.3.6 CONNECT, RFC 9112 message syntax).
//
// Only `CONNECT host:port HTTP/1.x` is accepted; the target is an authority (hostname, canonical
// IPv4 dotted quad, or bracketed IPv6) with a port. Header lines must end in CRLF; obsolete line
// folding, control characters, duplicate Proxy-Authorization, and message bodies
// (Content-Length / Transfer-Encoding) are refused. The parser is pure: it takes the bytes of
// the complete head (up to and including the empty line) and returns a value; it never reads
// sockets and never echoes input into error texts, so replies can't reflect attacker bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dingbridge::proxy {

enum class HeadError {
    none,
    malformed,           // 400
    method_not_allowed,  // 405 + Allow: CONNECT
    bad_target,          // 400: host:port is not a valid authority
};

struct BasicCredentials {
    std::string user;
    std::string password;
};

struct ConnectRequest {
    std::string host;  // lowercase, no brackets, no trailing dot
    std::uint16_t port = 0;
    bool host_is_ip = false;
    bool has_authorization = false;         // a Proxy-Authorization header was present
    std::optional<BasicCredentials> basic;  // decoded when the scheme is Basic and well formed
};

struct HeadResult {
    HeadError error = HeadError::none;
    const char* reason = "";  // fixed text for logs and the reply body
    ConnectRequest request;
};

// `head` must contain the whole head including the terminating CRLF CRLF.
HeadResult parse_connect_head(std::string_view head);

// Finds the end of the head in `data`: the index just past the first empty line ("\r\n\r\n",
// or a bare-LF form such as "\n\n", which parse_connect_head then refuses), or npos.
// `searched`: a length of `data` already searched without a result (by an earlier call on a
// shorter piece of the same head); only what can still hold the end is searched again.
std::size_t find_head_end(std::string_view data, std::size_t searched = 0);

}  // namespace dingbridge::proxy
