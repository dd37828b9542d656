#include "proxy/auth_throttle.h"

#include <cmath>
#include <cstring>

namespace dingbridge::proxy {

std::size_t AuthThrottle::Hash::operator()(const IpAddress& a) const {
    std::uint64_t x, y;
    std::memcpy(&x, a.bytes().data(), 8);
    std::memcpy(&y, a.bytes().data() + 8, 8);
    return std::hash<std::uint64_t>()(x * 0x9E3779B97F4A7C15ULL ^ y);
}

int AuthThrottle::blocked_for(const IpAddress& source, const AuthThrottleSettings&, Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(source);
    if (it == entries_.end() || it->second.blocked_until <= now) return 0;
    const double seconds = std::chrono::duration<double>(it->second.blocked_until - now).count();
    return std::max(1, static_cast<int>(std::ceil(seconds)));
}

void AuthThrottle::record_failure(const IpAddress& source, const AuthThrottleSettings& s, Clock::time_point now) {
    if (s.max_failures == 0) return;  // throttling disabled
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= kMaxEntries && entries_.find(source) == entries_.end()) {
        // Drop expired entries; if none expired, drop everything rather than grow without bound.
        for (auto it = entries_.begin(); it != entries_.end();) {
            if (it->second.blocked_until <= now && now - it->second.window_start > s.window) it = entries_.erase(it);
            else ++it;
        }
        if (entries_.size() >= kMaxEntries) entries_.clear();
    }
    Entry& e = entries_[source];
    if (e.failures == 0 || now - e.window_start > s.window) {
        e.failures = 0;
        e.window_start = now;
    }
    if (++e.failures >= s.max_failures) {
        e.blocked_until = now + s.cooldown;
        e.failures = 0;
    }
}

void AuthThrottle::record_success(const IpAddress& source) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(source);
    if (it != entries_.end() && it->second.blocked_until <= Clock::now()) entries_.erase(it);
}

}  // namespace dingbridge::proxy
