#include "shared/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace dingbridge {

namespace {

std::optional<std::uint32_t> parse_dotted_quad(std::string_view text) {
    std::uint32_t value = 0;
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i]))) return std::nullopt;
        if (text[i] == '0' && i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
            return std::nullopt;  // leading zero: octal in inet_aton, ambiguous, refused
        }
        unsigned part = 0;
        int digits = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            part = part * 10 + static_cast<unsigned>(text[i] - '0');
            if (++digits > 3 || part > 255) return std::nullopt;
            ++i;
        }
        value = (value << 8) | part;
        ++parts;
        if (parts < 4) {
            if (i >= text.size() || text[i] != '.') return std::nullopt;
            ++i;
        }
    }
    if (i != text.size()) return std::nullopt;
    return value;
}

}  // namespace

IpAddress IpAddress::v4(std::uint32_t host_order) {
    IpAddress a;
    a.bytes_[10] = 0xff;
    a.bytes_[11] = 0xff;
    a.bytes_[12] = static_cast<std::uint8_t>(host_order >> 24);
    a.bytes_[13] = static_cast<std::uint8_t>(host_order >> 16);
    a.bytes_[14] = static_cast<std::uint8_t>(host_order >> 8);
    a.bytes_[15] = static_cast<std::uint8_t>(host_order);
    return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    if (text.empty() || text.size() > 64) return std::nullopt;
    if (auto v4addr = parse_dotted_quad(text)) return v4(*v4addr);
    if (text.find(':') == std::string_view::npos) return std::nullopt;
    // inet_pton(AF_INET6) is strict RFC 4291 text (no zone id, no brackets); its embedded IPv4
    // tail accepts only dotted quads.
    std::string copy(text);
    in6_addr a6{};
    if (inet_pton(AF_INET6, copy.c_str(), &a6) != 1) return std::nullopt;
    IpAddress a;
    std::memcpy(a.bytes_.data(), &a6, 16);
    return a;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const struct sockaddr* sa) {
    if (sa == nullptr) return std::nullopt;
    if (sa->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        return v4(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        IpAddress a;
        std::memcpy(a.bytes_.data(), &in6->sin6_addr, 16);
        return a;
    }
    return std::nullopt;
}

SocketAddress SocketAddress::of(const IpAddress& ip, std::uint16_t port) {
    SocketAddress out;
    if (ip.is_v4()) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = htonl(ip.v4_value());
        out.length = sizeof(sockaddr_in);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        std::memcpy(&sin6->sin6_addr, ip.bytes().data(), 16);
        out.length = sizeof(sockaddr_in6);
    }
    return out;
}

std::uint16_t port_of(const sockaddr* sa) {
    if (sa == nullptr) return 0;
    if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
    if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
    return 0;
}

bool IpAddress::is_v4() const {
    for (int i = 0; i < 10; ++i)
        if (bytes_[i] != 0) return false;
    return bytes_[10] == 0xff && bytes_[11] == 0xff;
}

std::uint32_t IpAddress::v4_value() const {
    return (std::uint32_t(bytes_[12]) << 24) | (std::uint32_t(bytes_[13]) << 16) | (std::uint32_t(bytes_[14]) << 8) |
           std::uint32_t(bytes_[15]);
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
    if (is_v4()) return std::nullopt;
    auto tail = [&](int offset) {
        return v4((std::uint32_t(bytes_[offset]) << 24) | (std::uint32_t(bytes_[offset + 1]) << 16) |
                  (std::uint32_t(bytes_[offset + 2]) << 8) | std::uint32_t(bytes_[offset + 3]));
    };
    bool first12_zero = true;
    for (int i = 0; i < 12; ++i) first12_zero = first12_zero && bytes_[i] == 0;
    if (first12_zero) return tail(12);  // IPv4-compatible ::a.b.c.d (includes :: and ::1 → 0.0.0.x)
    static const std::uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (std::memcmp(bytes_.data(), nat64, 12) == 0) return tail(12);
    // IPv4-translated ::ffff:0:a.b.c.d (::ffff:0:0/96, RFC 2765 SIIT).
    static const std::uint8_t translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    if (std::memcmp(bytes_.data(), translated, 12) == 0) return tail(12);
    if (bytes_[0] == 0x20 && bytes_[1] == 0x02) return tail(2);  // 6to4
    return std::nullopt;
}

std::vector<IpAddress> IpAddress::local_nat64_readings() const {
    static const std::uint8_t local_nat64[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    std::vector<IpAddress> out;
    if (is_v4() || std::memcmp(bytes_.data(), local_nat64, 6) != 0) return out;
    auto of = [&](int a, int b, int c, int d) {  // byte 8 (bits 64-71) is never part of it
        const std::uint32_t v = (std::uint32_t(bytes_[a]) << 24) | (std::uint32_t(bytes_[b]) << 16) |
                                (std::uint32_t(bytes_[c]) << 8) | std::uint32_t(bytes_[d]);
        if ((v >> 24) != 0) out.push_back(v4(v));
    };
    of(12, 13, 14, 15);  // /96
    of(9, 10, 11, 12);   // /64
    of(7, 9, 10, 11);    // /56
    of(6, 7, 9, 10);     // /48
    return out;
}

IpAddress IpAddress::source() const {
    IpAddress s = *this;
    if (!is_v4()) std::fill(s.bytes_.begin() + 8, s.bytes_.end(), std::uint8_t{0});
    return s;
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (is_v4()) {
        // Hand-rolled: glibc's inet_ntop formats IPv4 with sprintf, a measurable cost per tunnel.
        char* p = buf;
        for (int i = 12; i < 16; ++i) {
            unsigned v = bytes_[i];
            if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
            if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
            *p++ = static_cast<char>('0' + v % 10);
            if (i < 15) *p++ = '.';
        }
        return std::string(buf, static_cast<std::size_t>(p - buf));
    } else {
        in6_addr a6{};
        std::memcpy(&a6, bytes_.data(), 16);
        inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    }
    return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
    auto set_error = [&](const char* e) {
        if (error) *error = e;
        return std::nullopt;
    };
    size_t slash = text.find('/');
    auto address = IpAddress::parse(text.substr(0, slash));
    if (!address) return set_error("not an IP address (IPv4 dotted quad or IPv6)");
    const int max = address->is_v4() ? 32 : 128;
    int prefix = max;
    if (slash != std::string_view::npos) {
        std::string_view p = text.substr(slash + 1);
        if (p.empty() || p.size() > 3) return set_error("invalid prefix length");
        prefix = 0;
        for (char c : p) {
            if (!std::isdigit(static_cast<unsigned char>(c))) return set_error("invalid prefix length");
            prefix = prefix * 10 + (c - '0');
        }
        if (prefix > max) return set_error("prefix length too long for the address family");
    }
    Cidr c;
    c.base_ = *address;
    c.prefix_ = address->is_v4() ? prefix + 96 : prefix;
    // Host bits must be zero: "10.0.0.1/8" is usually a typo for a host or a network.
    const auto& b = c.base_.bytes();
    for (int bit = c.prefix_; bit < 128; ++bit) {
        if (b[bit / 8] & (0x80 >> (bit % 8))) return set_error("address has bits set beyond the prefix length");
    }
    return c;
}

bool Cidr::contains(const IpAddress& address) const {
    // IPv4 addresses are kept as ::ffff:a.b.c.d, inside IPv6 prefixes of /80 and shorter: an IPv6
    // network ("::/0" for IPv6 clients) must not take every IPv4 address with it.
    if (address.is_v4() && !base_.is_v4()) return false;
    const auto& a = address.bytes();
    const auto& b = base_.bytes();
    int full = prefix_ / 8;
    if (std::memcmp(a.data(), b.data(), full) != 0) return false;
    int rest = prefix_ % 8;
    if (rest == 0) return true;
    std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

std::string Cidr::to_string() const {
    return base_.to_string() + "/" + std::to_string(base_.is_v4() ? prefix_ - 96 : prefix_);
}

bool NetworkSet::contains(const IpAddress& address) const {
    for (const auto& n : networks_)
        if (n.contains(address)) return true;
    return false;
}

int NetworkSet::longest_match(const IpAddress& address) const {
    int best = -1;
    for (const auto& n : networks_)
        if (n.prefix() > best && n.contains(address)) best = n.prefix();
    return best;
}

std::optional<HostPort> split_host_port(std::string_view text, bool allow_port_zero) {
    HostPort hp;
    std::string_view port;
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
        hp.host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
        if (hp.host.find(':') == std::string::npos) return std::nullopt;
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return std::nullopt;
        hp.host = std::string(text.substr(0, colon));
        if (hp.host.find(':') != std::string::npos) return std::nullopt;  // bare IPv6 needs brackets
        port = text.substr(colon + 1);
    }
    if (hp.host.empty() || port.empty() || port.size() > 5) return std::nullopt;
    unsigned value = 0;
    for (char c : port) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if ((value == 0 && !allow_port_zero) || value > 65535) return std::nullopt;
    hp.port = static_cast<std::uint16_t>(value);
    return hp;
}

bool is_valid_hostname(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    size_t start = 0;
    bool last_all_numeric = false;
    while (start <= host.size()) {
        size_t dot = host.find('.', start);
        std::string_view label =
            host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63) return false;
        if (label.front() == '-' || label.back() == '-') return false;
        bool numeric = true;
        for (char c : label) {
            const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
            if (!ok) return false;
            if (!std::isdigit(static_cast<unsigned char>(c))) numeric = false;
        }
        last_all_numeric = numeric;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    if (last_all_numeric) return false;
    // "0x7f.1"-style hex spellings are refused by glibc's resolver only sometimes; refuse them here.
    if (host.size() > 2 && host[0] == '0' && (host[1] == 'x' || host[1] == 'X')) {
        bool hexish = true;
        for (char c : host)
            hexish = hexish && (std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'x' || c == 'X');
        if (hexish) return false;
    }
    return true;
}

bool accept_out_of_resources(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }

}  // namespace dingbridge
