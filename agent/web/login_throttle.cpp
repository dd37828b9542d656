#include "agent/web/login_throttle.h"

#include <algorithm>

namespace dingbridge::agent::web {

namespace {

const AuthThrottleSettings kSettings{LoginThrottle::kPerSource, LoginThrottle::kPerUser, std::chrono::minutes(1),
                                     std::chrono::minutes(1)};

}  // namespace

void LoginThrottle::roll(Clock::time_point now) {
    if (now - minute_start_ >= std::chrono::minutes(1)) {
        minute_start_ = now;
        refusals_ = 0;
    }
}

bool LoginThrottle::trusted(const IpAddress& source, Clock::time_point now) const {
    auto it = trusted_.find(AuthThrottle::source_key(source));
    return it != trusted_.end() && now < it->second;
}

int LoginThrottle::wait(const IpAddress& source, const std::string* name, Clock::time_point now) {
    roll(now);
    const bool trusted = this->trusted(source, now);
    // A trusted source is held only by its own count: others guessing a name (or flooding) must
    // not lock out the address an administrator logged in from.
    if (const int w = failures_.blocked_for(source, trusted ? nullptr : name, kSettings, now)) return w;
    if (trusted || refusals_ < kAllSources) return 0;
    const auto left = minute_start_ + std::chrono::minutes(1) - now;
    return std::max(1, static_cast<int>(std::chrono::ceil<std::chrono::seconds>(left).count()));
}

void LoginThrottle::refused(const IpAddress& source, const std::string* name, Clock::time_point now) {
    roll(now);
    ++refusals_;
    failures_.record_failure(source, name, kSettings, now);
}

void LoginThrottle::verified(const IpAddress& source, Clock::time_point now) {
    const std::string key = AuthThrottle::source_key(source);
    if (trusted_.size() >= kMaxTrusted && !trusted_.count(key)) {
        std::erase_if(trusted_, [&](const auto& kv) { return kv.second <= now; });
        if (trusted_.size() >= kMaxTrusted)  // all still trusted: forget the one trusted longest ago
            trusted_.erase(std::min_element(trusted_.begin(), trusted_.end(),
                                            [](const auto& a, const auto& b) { return a.second < b.second; }));
    }
    trusted_[key] = now + kTrust;
}

}  // namespace dingbridge::agent::web
