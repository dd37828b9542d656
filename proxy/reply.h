#pragma once
// Pure text builders of dingbridge-proxy: the error replies sent to clients and the access-log
// lines. Values in, strings out: no sockets, no clocks, so they are unit-tested on their own.

#include <cstdint>
#include <string>
#include <string_view>

namespace dingbridge::proxy {

// The reason phrase of a status the proxy sends ("Error" for others).
const char* status_text(int status);

// A complete error reply: status line, Proxy-Authenticate (407, with `realm`), Allow (405),
// Retry-After (`retry_after` > 0), a text body of `reason` and Connection: close. `reason` must
// be a fixed text of the proxy, never client input.
std::string error_reply(int status, std::string_view reason, std::string_view realm, int retry_after);

// One tunnel's access-log record.
struct AccessRecord {
    std::string_view time;    // ISO 8601 UTC
    std::string_view tenant;  // "" = not identified
    std::string_view user;    // client-supplied: escaped
    std::string_view source;  // "ip:port" / "[ip]:port"
    bool tls = false;
    std::string_view destination;  // "host:port" or "-"
    std::string_view resolved_ip;  // "" = none
    int status = 0;
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
    long long setup_ms = -1;
    long long total_ms = 0;
    std::string_view reason;
};

// A value of the text format's key=value fields: "-" when empty (a value "-" is \x2d); printable ASCII except '=', '"'
// and '\\' as is, every other byte (space, control, non-ASCII) as \xHH, so that a value never
// holds a space or '=' that a key=value parser would split on.
std::string text_log_value(std::string_view value);

// `text` with every byte that starts no well-formed UTF-8 sequence replaced by U+FFFD: a JSON
// line must be UTF-8 (RFC 8259 §8.1), and a client-supplied name must not make a strict reader
// reject the whole access log.
std::string valid_utf8(std::string_view text);

// The line for `format` "json" (one JSON object) or "text" (key=value); no trailing newline.
std::string access_log_line(const AccessRecord& r, bool json);

}  // namespace dingbridge::proxy
