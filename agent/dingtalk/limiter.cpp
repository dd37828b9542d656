#include "agent/dingtalk/limiter.h"

#include <algorithm>

namespace dingbridge::agent::dingtalk {

void RateLimiter::refill(Bucket& b, Clock::time_point now) const {
    if (!b.init) {
        b.tokens = burst_;
        b.last = now;
        b.init = true;
        return;
    }
    if (now <= b.last) return;
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = now;
}

bool RateLimiter::try_take(const std::string& key, Clock::time_point now, Clock::time_point& ready_at) {
    if (rate_ <= 0) return true;  // unlimited
    Bucket& b = buckets_[key];
    refill(b, now);
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        return true;
    }
    double wait_s = (1.0 - b.tokens) / rate_;
    ready_at = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_s));
    return false;
}

bool RateLimiter::available(const std::string& key, Clock::time_point now, Clock::time_point& ready_at) {
    if (rate_ <= 0) return true;
    Bucket& b = buckets_[key];
    refill(b, now);
    if (b.tokens >= 1.0) return true;
    ready_at = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((1.0 - b.tokens) / rate_));
    return false;
}

void RateLimiter::penalize(const std::string& key, Clock::time_point now) {
    if (rate_ <= 0) return;
    Bucket& b = buckets_[key];
    refill(b, now);
    b.tokens = std::min(b.tokens, 0.0);
}

}  // namespace dingbridge::agent::dingtalk
