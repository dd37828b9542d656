#pragma once
// Token-bucket rate limiter, one bucket per key (API path), so that the agent stays *under*
// DingTalk's per-app per-API QPS (dingtalk-api.md §4: 20/s on standard orgs; a full sync at the
// limit must see no throttle errors). Tokens refill continuously at `rate` per second up to
// `burst`. Time is passed in, so the logic is unit-tested without sleeping. Single-threaded.

#include <chrono>
#include <map>
#include <string>

namespace dingbridge::agent::dingtalk {

class RateLimiter {
public:
    using Clock = std::chrono::steady_clock;

    RateLimiter(double rate, double burst) : rate_(rate), burst_(burst) {}

    // Takes one token for `key` if available now; otherwise returns false and sets `ready_at`
    // to when one will be.
    bool try_take(const std::string& key, Clock::time_point now, Clock::time_point& ready_at);

    // Like try_take, without taking.
    bool available(const std::string& key, Clock::time_point now, Clock::time_point& ready_at);

    // After a throttle answer: empty the bucket so that the next call waits a full interval.
    void penalize(const std::string& key, Clock::time_point now);

    double rate() const { return rate_; }

private:
    struct Bucket {
        double tokens = 0;
        Clock::time_point last{};
        bool init = false;
    };
    void refill(Bucket& b, Clock::time_point now) const;

    double rate_;
    double burst_;
    std::map<std::string, Bucket> buckets_;
};

}  // namespace dingbridge::agent::dingtalk
