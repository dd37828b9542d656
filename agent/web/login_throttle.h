#pragma once
// Which console logins may cost a password check. Each refused password costs a scrypt (tens of
// ms, 32 MiB) on the console's thread, so refusals are throttled like the proxy's
// (shared/auth_throttle.h): per source (an IPv4 address or an IPv6 /64) and per user name, so a
// source that guesses locks out only itself. All sources together get a budget per minute.
// A source that logged in successfully in the last hour is held only by its own count: neither
// a blocked user name nor the exhausted budget stops it. Callers answer 429 without hashing.
// Not thread-safe (the console serves on one thread).

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

#include "shared/auth_throttle.h"
#include "shared/net.h"

namespace dingbridge::agent::web {

class LoginThrottle {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr unsigned kPerSource = 20;        // refusals per minute, then blocked for a minute
    static constexpr unsigned kPerUser = 100;         // refusals of one user name per minute, from anywhere
    static constexpr int kAllSources = 200;           // refusals per minute from all sources together
    static constexpr std::size_t kMaxSources = 4096;  // failure counters kept (oldest evicted first)
    static constexpr std::size_t kMaxTrusted = 1000;  // sources remembered as verified
    static constexpr auto kTrust = std::chrono::hours(1);

    // Seconds to wait before `name` (null: credentials without a name) may be tried from
    // `source`; 0 = check the password now.
    int wait(const IpAddress& source, const std::string* name, Clock::time_point now);
    void refused(const IpAddress& source, const std::string* name, Clock::time_point now);
    void verified(const IpAddress& source, Clock::time_point now);
    // Logged in from `source` within the last kTrust.
    bool trusted(const IpAddress& source, Clock::time_point now) const;

private:
    void roll(Clock::time_point now);

    AuthThrottle failures_{kMaxSources};
    std::map<std::string, Clock::time_point> trusted_;  // source key -> trusted until
    Clock::time_point minute_start_{};
    int refusals_ = 0;  // from all sources since minute_start_
};

}  // namespace dingbridge::agent::web
