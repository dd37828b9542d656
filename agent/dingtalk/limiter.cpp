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
    b.tokens = std::min(burst_, b.tokens + elapsed * (b.rate < 0 ? rate_ : b.rate));
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
    double wait_s = (1.0 - b.tokens) / (b.rate < 0 ? rate_ : b.rate);
    ready_at = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_s));
    return false;
}

bool RateLimiter::available(const std::string& key, Clock::time_point now, Clock::time_point& ready_at) {
    if (rate_ <= 0) return true;
    Bucket& b = buckets_[key];
    refill(b, now);
    if (b.tokens >= 1.0) return true;
    ready_at = now + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>((1.0 - b.tokens) / (b.rate < 0 ? rate_ : b.rate)));
    return false;
}

void RateLimiter::penalize(const std::string& key, Clock::time_point now) {
    if (rate_ <= 0) return;
    Bucket& b = buckets_[key];
    refill(b, now);
    b.tokens = std::min(b.tokens, 0.0);
}

bool RateLimiter::on_throttle(const std::string& key, Clock::time_point now) {
    if (rate_ <= 0) return false;
    Bucket& b = buckets_[key];
    refill(b, now);
    b.tokens = std::min(b.tokens, 0.0);
    if (b.last_cut != Clock::time_point{} && now - b.last_cut < std::chrono::seconds(1)) return false;
    b.last_cut = now;
    double r = b.rate < 0 ? rate_ : b.rate;
    b.rate = std::max(min_rate, r / 2);
    return true;
}

void RateLimiter::on_success(const std::string& key) {
    if (rate_ <= 0) return;
    auto it = buckets_.find(key);
    if (it == buckets_.end() || it->second.rate < 0) return;
    Bucket& b = it->second;
    b.rate += rate_ / recover_calls;
    if (b.rate >= rate_) b.rate = -1;
}

double RateLimiter::rate(const std::string& key) const {
    auto it = buckets_.find(key);
    return it == buckets_.end() || it->second.rate < 0 ? rate_ : it->second.rate;
}

}  // namespace dingbridge::agent::dingtalk
