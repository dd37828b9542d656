#pragma once
// Throttles repeated authentication failures per client address: after `max_failures` failures
// within `window`, the address is refused (429) without checking credentials until `cooldown`
// has passed. This bounds both password guessing and the CPU an attacker can make us spend on
// scrypt. Thread-safe; memory is bounded (oldest entries are dropped beyond a fixed size).

#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "shared/net.h"

namespace dingbridge::proxy {

struct AuthThrottleSettings {
    unsigned max_failures = 10;
    std::chrono::milliseconds window{60'000};
    std::chrono::milliseconds cooldown{300'000};
};

class AuthThrottle {
public:
    using Clock = std::chrono::steady_clock;

    // Seconds the address must still wait, or 0 when it may try.
    int blocked_for(const IpAddress& source, const AuthThrottleSettings& s, Clock::time_point now = Clock::now());
    void record_failure(const IpAddress& source, const AuthThrottleSettings& s, Clock::time_point now = Clock::now());
    void record_success(const IpAddress& source);

private:
    struct Entry {
        unsigned failures = 0;
        Clock::time_point window_start;
        Clock::time_point blocked_until;
    };
    struct Hash {
        std::size_t operator()(const IpAddress& a) const;
    };
    static constexpr std::size_t kMaxEntries = 65536;

    std::mutex mutex_;
    std::unordered_map<IpAddress, Entry, Hash> entries_;
};

}  // namespace dingbridge::proxy
