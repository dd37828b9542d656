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

std::string access_log_line(const AccessRecord& r, bool json) {
    const std::string tenant(r.tenant), user(r.user), destination(r.destination), reason(r.reason);
    if (json) {
        return fmt::format(
            R"({{"time":"{}","tenant":"{}","user":"{}","source":"{}","tls":{},"destination":"{}","resolved_ip":"{}","status":{},"bytes_up":{},"bytes_down":{},"setup_ms":{},"total_ms":{},"reason":"{}"}})",
            r.time, json_escape(tenant), json_escape(user), r.source, r.tls ? "true" : "false",
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
