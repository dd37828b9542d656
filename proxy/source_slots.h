#pragma once
// How many connections each source holds before it is authorised (limits.max_pending_per_source).
//
// A connection counts from accept until its tenant admits it (or it closes): the TLS handshake,
// the request head, the password check and a throttled 429 held for reply_delay. Without a cap,
// one address holding idle connections takes every max_connections slot and all tenants get 503
// until it lets go. A source is an IPv4 address or an IPv6 /64 (the throttle's key), since one
// host usually owns a whole /64. Authorised tunnels do not count: tenants bound those themselves
// (max_tunnels). Thread-safe; one table per process, shared by the workers.

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "shared/net.h"

namespace dingbridge::proxy {

class SourceSlots {
public:
    // Counts one more connection from `source` and returns true, unless it already holds `limit`
    // (0 = no limit, still counted).
    bool take(const IpAddress& source, std::size_t limit);
    // Gives back a slot `take` granted.
    void release(const IpAddress& source);
    // Connections `source` (its /64 for IPv6) holds now.
    std::size_t held(const IpAddress& source) const;
    // Sources holding any (the table's size).
    std::size_t sources() const;

private:
    using Key = std::array<std::uint8_t, 16>;
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept;
    };
    static Key key_of(const IpAddress& source);

    mutable std::mutex mu_;
    std::unordered_map<Key, std::uint32_t, KeyHash> held_;
};

}  // namespace dingbridge::proxy
