#pragma once
// IP addresses and networks (IPv4 and IPv6), parsed strictly.
//
// IpAddress holds 16 bytes; IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d) so
// that one comparison covers both families and `::ffff:127.0.0.1` *is* 127.0.0.1. Parsing
// accepts only canonical spellings: dotted-quad IPv4 without leading zeros, and RFC 4291 IPv6
// without zone ids. Anything else (`0x7f.1`, `2130706433`, `127.1`, `0177.0.0.1`) is not an
// address, which is what keeps alternative spellings from sneaking past the deny networks.
// Pure values; safe to share between threads.

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dingbridge {

class IpAddress {
public:
    IpAddress() = default;

    static std::optional<IpAddress> parse(std::string_view text);
    static std::optional<IpAddress> from_sockaddr(const struct sockaddr* sa);
    static IpAddress v4(std::uint32_t host_order);

    bool is_v4() const;              // IPv4 or IPv4-mapped
    std::uint32_t v4_value() const;  // host order; only when is_v4()
    // The IPv4 address embedded in IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:0/96),
    // NAT64 (64:ff9b::/96) or 6to4 (2002:AABB:CCDD::/48) forms; these reach IPv4 hosts too, so
    // the deny check looks at them.
    std::optional<IpAddress> embedded_v4() const;
    // In the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215), where a local NAT64 may use any
    // RFC 6052 layout (prefix /96, /64, /56 or /48): the IPv4 address each layout would carry,
    // those that read as 0.0.0.0/8 (zero bits: not that layout) left out.
    std::vector<IpAddress> local_nat64_readings() const;
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    std::string to_string() const;
    // The client this address stands for when counting per source (throttles, connection caps):
    // an IPv4 address itself; for IPv6 its /64 (host bits cleared), since one host usually owns
    // a whole /64 and could otherwise take a new address for every attempt.
    IpAddress source() const;

    friend bool operator==(const IpAddress&, const IpAddress&) = default;

private:
    std::array<std::uint8_t, 16> bytes_{};
};

// A socket address built from an IpAddress and a port: AF_INET for IPv4 (and IPv4-mapped)
// addresses, AF_INET6 otherwise. The one place that turns addresses into sockaddrs.
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    static SocketAddress of(const IpAddress& ip, std::uint16_t port);
    int family() const { return storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// The port of an AF_INET / AF_INET6 socket address (host order); 0 for other families.
std::uint16_t port_of(const sockaddr* sa);

class Cidr {
public:
    // "10.0.0.0/8", "fc00::/7", or a bare address (a /32 or /128). Host bits must be zero.
    static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);
    // The one address (a /32 or /128).
    static Cidr host(const IpAddress& address) {
        Cidr c;
        c.base_ = address;
        c.prefix_ = 128;
        return c;
    }

    bool contains(const IpAddress& address) const;
    // Some address is in both (one network holds the other). An IPv6 network holds no IPv4
    // address, although IPv4 addresses are kept as ::ffff:a.b.c.d.
    bool overlaps(const Cidr& other) const {
        return prefix_ <= other.prefix_ ? contains(other.base_) : other.contains(base_);
    }
    std::string to_string() const;
    int prefix() const { return prefix_; }  // in the 128-bit space (IPv4 /8 is /104)
    friend bool operator==(const Cidr&, const Cidr&) = default;

private:
    IpAddress base_;
    int prefix_ = 0;  // in the 128-bit space (IPv4 /8 is stored as /104)
};

class NetworkSet {
public:
    void add(const Cidr& cidr) { networks_.push_back(cidr); }
    bool contains(const IpAddress& address) const;
    // The longest prefix among the networks that hold `address` (in the 128-bit space); -1: none.
    int longest_match(const IpAddress& address) const;
    bool empty() const { return networks_.empty(); }
    const std::vector<Cidr>& networks() const { return networks_; }

private:
    std::vector<Cidr> networks_;
};

// Host and port of a "host:port" / "[v6]:port" string. Host is returned without brackets.
struct HostPort {
    std::string host;
    std::uint16_t port = 0;
};
// `allow_port_zero`: listen addresses may ask the kernel for a free port with ":0".
std::optional<HostPort> split_host_port(std::string_view text, bool allow_port_zero = false);

// True for a syntactically valid DNS name (RFC 1123 labels, 1..253 chars, no trailing dot after
// normalization) whose last label is not all-numeric — such names are address spellings, not names.
bool is_valid_hostname(std::string_view host);

// An accept(2) error that retrying at once cannot cure (out of descriptors or kernel memory): the
// connection stays queued, so a listener must pause instead of spinning. Used by the proxy's
// listeners and the agent's HTTP listeners.
bool accept_out_of_resources(int err);

}  // namespace dingbridge
