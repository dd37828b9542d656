#include "proxy/request_head.h"

#include <cctype>
#include <optional>
#include <vector>

#include "shared/ascii.h"
#include "shared/base64.h"
#include "shared/net.h"

namespace dingbridge::proxy {

namespace {

constexpr std::size_t kMaxHeaders = 64;

bool is_tchar(char c) {
    // RFC 9110 §5.6.2 token characters.
    if (std::isalnum(static_cast<unsigned char>(c))) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

HeadResult fail(HeadError e, const char* reason) {
    HeadResult r;
    r.error = e;
    r.reason = reason;
    return r;
}

}  // namespace

std::size_t find_head_end(std::string_view data, std::size_t searched) {
    // The head ends at the first empty line. A line may end in a bare LF here: such a head is
    // then refused by parse_connect_head (400) at once instead of waiting for a CRLF CRLF that
    // never comes. An end not found in the first `searched` bytes starts in their last two.
    const std::size_t from = searched < 2 ? 0 : std::min(searched, data.size()) - 2;
    for (std::size_t i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1)) {
        if (i + 1 < data.size() && data[i + 1] == '\n') return i + 2;
        if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
    }
    return std::string_view::npos;
}

namespace {

// The head's lines without their CRLF. A bare CR or LF anywhere else is malformed (request
// smuggling vector). Returns a failure, or nothing when `lines` is filled.
std::optional<HeadResult> split_lines(std::string_view head, std::vector<std::string_view>& lines) {
    if (head.size() < 4 || head.substr(head.size() - 4) != "\r\n\r\n") {
        return fail(HeadError::malformed, "incomplete request head");
    }
    std::size_t start = 0;
    const std::string_view body = head.substr(0, head.size() - 2);  // keep the last line's CRLF
    while (start < body.size()) {
        std::size_t crlf = body.find("\r\n", start);
        if (crlf == std::string_view::npos) return fail(HeadError::malformed, "line without CRLF");
        std::string_view line = body.substr(start, crlf - start);
        for (char c : line) {
            const unsigned char u = static_cast<unsigned char>(c);
            if (c == '\r' || c == '\n' || u == 0 || u == 0x7f || (u < 0x20 && c != '\t')) {
                return fail(HeadError::malformed, "control character in request head");
            }
        }
        lines.push_back(line);
        start = crlf + 2;
    }
    if (lines.empty()) return fail(HeadError::malformed, "empty request");
    if (lines.size() - 1 > kMaxHeaders) return fail(HeadError::malformed, "too many header fields");
    return std::nullopt;
}

// Request line: method SP request-target SP HTTP-version; only CONNECT is accepted.
std::optional<HeadResult> check_request_line(std::string_view request_line, std::string_view& target) {
    const std::size_t sp1 = request_line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return fail(HeadError::malformed, "malformed request line");
    const std::size_t sp2 = request_line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return fail(HeadError::malformed, "malformed request line");
    const std::string_view method = request_line.substr(0, sp1);
    target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = request_line.substr(sp2 + 1);
    for (char c : method)
        if (!is_tchar(c)) return fail(HeadError::malformed, "malformed method");
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return fail(HeadError::malformed, "unsupported HTTP version");
    if (target.find(' ') != std::string_view::npos || target.find('\t') != std::string_view::npos) {
        return fail(HeadError::malformed, "malformed request line");
    }
    if (method != "CONNECT") return fail(HeadError::method_not_allowed, "only CONNECT is supported");
    return std::nullopt;
}

// host:port, [v6]:port; addresses in canonical form, names lower-cased without the final dot.
std::optional<HeadResult> parse_target(std::string_view target, ConnectRequest& req) {
    auto hp = split_host_port(target);
    if (!hp) return fail(HeadError::bad_target, "CONNECT target must be host:port");
    std::string host = ascii_lower(hp->host);
    const bool bracketed = !target.empty() && target[0] == '[';
    if (bracketed) {
        auto ip = IpAddress::parse(host);
        if (!ip || ip->is_v4()) return fail(HeadError::bad_target, "invalid IPv6 address in CONNECT target");
        req.host = ip->to_string();
        req.host_is_ip = true;
    } else if (auto ip = IpAddress::parse(host)) {
        req.host = ip->to_string();
        req.host_is_ip = true;
    } else {
        if (!host.empty() && host.back() == '.') host.pop_back();  // absolute name
        if (!is_valid_hostname(host)) return fail(HeadError::bad_target, "invalid host name in CONNECT target");
        req.host = host;
    }
    req.port = hp->port;
    return std::nullopt;
}

void parse_proxy_authorization(std::string_view value, ConnectRequest& req) {
    const std::size_t space = value.find(' ');
    if (space == std::string_view::npos || !iequals(value.substr(0, space), "Basic")) return;
    auto decoded = base64_decode(trim_ows(value.substr(space + 1)));
    if (!decoded) return;
    const std::size_t sep = decoded->find(':');
    if (sep != std::string::npos) req.basic = BasicCredentials{decoded->substr(0, sep), decoded->substr(sep + 1)};
}

std::optional<HeadResult> parse_field(std::string_view line, ConnectRequest& req) {
    if (line.empty()) return fail(HeadError::malformed, "unexpected empty line");
    if (line[0] == ' ' || line[0] == '\t') return fail(HeadError::malformed, "obsolete line folding");
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(HeadError::malformed, "malformed header field");
    const std::string_view name = line.substr(0, colon);
    for (char c : name)
        if (!is_tchar(c)) return fail(HeadError::malformed, "malformed header field name");
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) {
        return fail(HeadError::malformed, "CONNECT request must not carry a body");
    }
    if (iequals(name, "Proxy-Authorization")) {
        if (req.has_authorization) return fail(HeadError::malformed, "duplicate Proxy-Authorization");
        req.has_authorization = true;
        parse_proxy_authorization(value, req);
    }
    return std::nullopt;
}

}  // namespace

HeadResult parse_connect_head(std::string_view head) {
    std::vector<std::string_view> lines;
    if (auto failed = split_lines(head, lines)) return *failed;
    std::string_view target;
    if (auto failed = check_request_line(lines[0], target)) return *failed;
    HeadResult result;
    if (auto failed = parse_target(target, result.request)) return *failed;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        if (auto failed = parse_field(lines[i], result.request)) return *failed;
    }
    return result;
}

}  // namespace dingbridge::proxy
