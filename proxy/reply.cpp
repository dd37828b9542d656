#include "proxy/reply.h"

#include <spdlog/fmt/fmt.h>

#include "shared/log.h"

namespace dingbridge::proxy {

const char* status_text(int status) {
    switch (status) {
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 405:
            return "Method Not Allowed";
        case 407:
            return "Proxy Authentication Required";
        case 408:
            return "Request Timeout";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        default:
            return "Error";
    }
}

std::string error_reply(int status, std::string_view reason, std::string_view realm, int retry_after) {
    const std::string body = std::string(reason) + "\n";
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\n";
    if (status == 407) head += "Proxy-Authenticate: Basic realm=\"" + std::string(realm) + "\"\r\n";
    if (status == 405) head += "Allow: CONNECT\r\n";
    if (retry_after > 0) head += "Retry-After: " + std::to_string(retry_after) + "\r\n";
    head += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nConnection: close\r\n\r\n" + body;
    return head;
}

std::string text_log_value(std::string_view value) {
    if (value.empty()) return "-";
    if (value == "-") return "\\x2d";  // a user named "-" is not "no user"
    std::string out;
    out.reserve(value.size());
    for (const unsigned char c : value) {
        if (c > 0x20 && c < 0x7f && c != '=' && c != '"' && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else {
            out += fmt::format("\\x{:02x}", c);
        }
    }
    return out;
}

std::string valid_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
        const unsigned char c = byte(i);
        // The length of a well-formed sequence starting here (RFC 3629 §4), 0 when there is none.
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
        if (c < 0x80) {
            len = 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;  // no overlong forms
            if (c == 0xed) hi = 0x9f;  // no surrogates
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
        }
        bool ok = len != 0 && i + len <= text.size();
        for (std::size_t k = 1; ok && k < len; ++k) {
            const unsigned char b = byte(i + k);
            ok = k == 1 ? b >= lo && b <= hi : b >= 0x80 && b <= 0xbf;
        }
        if (ok) {
            out.append(text.substr(i, len));
            i += len;
        } else {
            out += "\xef\xbf\xbd";  // U+FFFD for the byte that starts no well-formed sequence
            ++i;
        }
    }
    return out;
}

std::string access_log_line(const AccessRecord& r, bool json) {
    const std::string tenant(r.tenant), user(r.user), destination(r.destination), reason(r.reason);
    if (json) {
        return fmt::format(
            R"({{"time":"{}","tenant":"{}","user":"{}","source":"{}","tls":{},"destination":"{}","resolved_ip":"{}","status":{},"bytes_up":{},"bytes_down":{},"setup_ms":{},"total_ms":{},"reason":"{}"}})",
            r.time, json_escape(tenant), json_escape(valid_utf8(user)), r.source, r.tls ? "true" : "false",
            json_escape(destination), r.resolved_ip, r.status, r.bytes_up, r.bytes_down, r.setup_ms, r.total_ms,
            json_escape(reason));
    }
    // User names are client-supplied (any bytes but ':'): escaped so that they can neither end
    // the line nor add or shadow a key=value field for the tools that parse it.
    return fmt::format(
        "{} tenant={} user={} src={}{} dst={} ip={} status={} up={} down={} setup_ms={} total_ms={} reason=\"{}\"",
        r.time, text_log_value(tenant), text_log_value(user), r.source, r.tls ? " tls" : "", destination,
        text_log_value(r.resolved_ip), r.status, r.bytes_up, r.bytes_down, r.setup_ms, r.total_ms, reason);
}

}  // namespace dingbridge::proxy
