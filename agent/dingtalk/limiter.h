#pragma once
// Token-bucket rate limiter, one bucket per key (API path), so that the agent stays *under*
// DingTalk's per-app per-API QPS (dingtalk-api.md §4: 20/s on standard orgs; a full sync at the
// limit must see no throttle errors). Tokens refill continuously at `rate` per second up to
// `burst`. Time is passed in, so the logic is unit-tested without sleeping. Single-threaded.
//
// The rate adapts (AIMD) when DingTalk's real limit is lower than the configured one (a
// different edition, other apps sharing it): a throttle answer halves the key's rate (at most
// once per second, so the answers of one burst count once; never below `min_rate`), and every
// successful call adds back rate/`recover_calls` until the configured rate is reached again.

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
    // A throttle answer: penalize and cut the key's rate (multiplicative decrease). Returns
    // true when the rate was cut.
    bool on_throttle(const std::string& key, Clock::time_point now);
    // A successful call: raise the key's rate a little (additive increase) up to the configured one.
    void on_success(const std::string& key);

    double rate() const { return rate_; }
    // The key's current (adapted) rate.
    double rate(const std::string& key) const;

    static constexpr double min_rate = 0.5;  // calls per second
    // The per-API burst. A whole token would let floor(rate + 1) calls into one second (20 at
    // qps 19). A quarter more than one absorbs a late wake-up (up to 13 ms at 19/s) without
    // losing the slot, which a burst of exactly 1 does: 18.6 calls/s at qps 19 instead of 19.0
    // (tests/bench/agent_bench.py, busiest_api_active_rate). Any one-second window still holds
    // at most floor(rate + 1.25) calls: 20 at qps 19, and, while network jitter stays below
    // (1 - 0.25) / rate seconds (39 ms at 19/s), at most 20 arrive at DingTalk in one second.
    static constexpr double api_burst = 1.25;
    static constexpr double recover_calls = 50;  // successes to climb back by the full rate

private:
    struct Bucket {
        double tokens = 0;
        Clock::time_point last{};
        bool init = false;
        double rate = -1;  // adapted rate; <0 = the configured one
        Clock::time_point last_cut{};
    };
    void refill(Bucket& b, Clock::time_point now) const;

    double rate_;
    double burst_;
    std::map<std::string, Bucket> buckets_;
};

}  // namespace dingbridge::agent::dingtalk
