#include "shared/auth_throttle.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/source_slots.h"
#include "proxy/verifier.h"

using namespace dingbridge;
using namespace dingbridge::proxy;

namespace {

IpAddress addr(const char* s) { return *IpAddress::parse(s); }

AuthThrottleSettings settings(unsigned per_source, unsigned per_user) {
    AuthThrottleSettings s;
    s.max_failures = per_source;
    s.max_failures_per_user = per_user;
    s.window = std::chrono::minutes(1);
    s.cooldown = std::chrono::minutes(5);
    return s;
}

// A login with the user's right password (a success clears no failure, it makes the source known).
void log_in(AuthThrottle& t, const char* source, const std::string& user, const AuthThrottleSettings& s,
            AuthThrottle::Clock::time_point now) {
    BOOST_REQUIRE(t.begin_attempt(addr(source), &user, s, now) == 0);
    BOOST_REQUIRE(t.end_attempt(addr(source), &user, AuthThrottle::Verdict::succeeded, s, now) == 0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(auth_throttle)

BOOST_AUTO_TEST_CASE(blocks_a_source_after_max_failures_and_lifts_after_cooldown) {
    AuthThrottle t;
    const auto s = settings(3, 0);
    const auto now = AuthThrottle::Clock::now();
    for (int i = 0; i < 2; ++i) t.record_failure(addr("192.0.2.1"), nullptr, s, now);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), nullptr, s, now) == 0);
    t.record_failure(addr("192.0.2.1"), nullptr, s, now);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), nullptr, s, now) == 300);
    BOOST_TEST(t.blocked_for(addr("192.0.2.2"), nullptr, s, now) == 0);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), nullptr, s, now + std::chrono::minutes(5)) == 0);
}

BOOST_AUTO_TEST_CASE(ipv6_sources_are_aggregated_by_64) {
    AuthThrottle t;
    const auto s = settings(3, 0);
    const auto now = AuthThrottle::Clock::now();
    t.record_failure(addr("2001:db8:1:2::1"), nullptr, s, now);
    t.record_failure(addr("2001:db8:1:2:ffff::9"), nullptr, s, now);
    t.record_failure(addr("2001:db8:1:2:1234:5678:9abc:def0"), nullptr, s, now);
    BOOST_TEST(t.blocked_for(addr("2001:db8:1:2::77"), nullptr, s, now) > 0);
    BOOST_TEST(t.blocked_for(addr("2001:db8:1:3::1"), nullptr, s, now) == 0);  // the next /64 is another source
}

BOOST_AUTO_TEST_CASE(a_user_name_is_throttled_across_sources) {
    AuthThrottle t;
    const auto s = settings(100, 3);
    const auto now = AuthThrottle::Clock::now();
    const std::string victim = "alice";
    t.record_failure(addr("198.51.100.1"), &victim, s, now);
    t.record_failure(addr("198.51.100.2"), &victim, s, now);
    t.record_failure(addr("2001:db8::1"), &victim, s, now);
    BOOST_TEST(t.blocked_for(addr("203.0.113.9"), &victim, s, now) > 0);
    const std::string other = "bob";
    BOOST_TEST(t.blocked_for(addr("203.0.113.9"), &other, s, now) == 0);
    BOOST_TEST(t.blocked_for(addr("203.0.113.9"), nullptr, s, now) == 0);
}

BOOST_AUTO_TEST_CASE(a_long_user_name_costs_a_fixed_key_and_is_still_throttled) {
    // Before: the per-user tables kept each made-up name whole, twice; 65,536 failed logins with
    // 5.8 KiB names held about 800 MB.
    const std::string long_name(6000, 'x');
    std::string other_long = long_name;
    other_long.back() = 'y';
    BOOST_TEST(AuthThrottle::user_key(long_name).size() == 33u);
    BOOST_TEST(AuthThrottle::user_key(long_name) != AuthThrottle::user_key(other_long));
    BOOST_TEST(AuthThrottle::user_key("alice") == "alice");
    const std::string name32(32, 'n');
    BOOST_TEST(AuthThrottle::user_key(name32) == name32);  // never equal to a digest key (33 bytes)
    AuthThrottle t;
    const auto s = settings(100, 3);
    const auto now = AuthThrottle::Clock::now();
    for (const char* source : {"198.51.100.1", "198.51.100.2", "198.51.100.3"})
        t.record_failure(addr(source), &long_name, s, now);
    BOOST_TEST(t.blocked_for(addr("203.0.113.9"), &long_name, s, now) > 0);
    BOOST_TEST(t.blocked_for(addr("203.0.113.9"), &other_long, s, now) == 0);
}

BOOST_AUTO_TEST_CASE(filling_the_table_never_lifts_a_block) {
    AuthThrottle t(1000);
    const auto s = settings(3, 3);
    const auto now = AuthThrottle::Clock::now();
    const std::string name = "alice";
    for (int i = 0; i < 3; ++i) t.record_failure(addr("192.0.2.1"), &name, s, now);
    BOOST_REQUIRE(t.blocked_for(addr("192.0.2.1"), nullptr, s, now) > 0);
    // Many times the table's size of one-off failures from distinct sources and names.
    for (std::uint32_t i = 0; i < 20'000; ++i) {
        const std::string n = "u" + std::to_string(i);
        t.record_failure(IpAddress::v4(0x0a000000u + i), &n, s, now + std::chrono::milliseconds(1));
    }
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), nullptr, s, now + std::chrono::seconds(1)) > 0);
    BOOST_TEST(t.blocked_for(addr("192.0.2.99"), &name, s, now + std::chrono::seconds(1)) > 0);
    // Eviction drops the oldest counting entries: an old one-off failure is forgotten, a recent one kept.
    for (int i = 0; i < 2; ++i) t.record_failure(IpAddress::v4(0x0a000000u + 19'999), nullptr, s, now);
    BOOST_TEST(t.blocked_for(IpAddress::v4(0x0a000000u + 19'999), nullptr, s, now) > 0);
}

BOOST_AUTO_TEST_CASE(only_failures_count_and_nothing_resets_them) {
    // The throttle has no "success" entry point: a valid login elsewhere cannot clear a count.
    AuthThrottle t;
    const auto s = settings(3, 0);
    const auto now = AuthThrottle::Clock::now();
    t.record_failure(addr("192.0.2.7"), nullptr, s, now);
    t.record_failure(addr("192.0.2.7"), nullptr, s, now + std::chrono::seconds(10));
    t.record_failure(addr("192.0.2.7"), nullptr, s, now + std::chrono::seconds(20));
    BOOST_TEST(t.blocked_for(addr("192.0.2.7"), nullptr, s, now + std::chrono::seconds(20)) > 0);
}

BOOST_AUTO_TEST_CASE(a_user_name_block_spares_sources_the_user_logged_in_from) {
    AuthThrottle t;
    const auto s = settings(3, 3);
    const auto now = AuthThrottle::Clock::now();
    const std::string alice = "alice";
    log_in(t, "192.0.2.1", alice, s, now);
    log_in(t, "2001:db8:5:6::1", alice, s, now);
    for (int i = 0; i < 3; ++i) t.record_failure(IpAddress::v4(0x0a000001u + i), &alice, s, now);
    BOOST_TEST(t.blocked_for(addr("198.51.100.7"), &alice, s, now) > 0);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), &alice, s, now) == 0);
    BOOST_TEST(t.blocked_for(addr("2001:db8:5:6::99"), &alice, s, now) == 0);  // the same /64
    // Known to alice only, and only for a while.
    const std::string bob = "bob";
    for (int i = 0; i < 3; ++i) t.record_failure(IpAddress::v4(0x0a000001u + i), &bob, s, now);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), &bob, s, now) > 0);
    const auto later = now + AuthThrottle::kKnownSourceTtl + std::chrono::seconds(1);
    for (int i = 0; i < 3; ++i) t.record_failure(IpAddress::v4(0x0a000001u + i), &alice, s, later);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), &alice, s, later) > 0);
}

BOOST_AUTO_TEST_CASE(a_known_source_is_still_blocked_by_its_own_failures) {
    AuthThrottle t;
    const auto s = settings(3, 100);
    const auto now = AuthThrottle::Clock::now();
    const std::string alice = "alice";
    log_in(t, "192.0.2.1", alice, s, now);
    for (int i = 0; i < 3; ++i) t.record_failure(addr("192.0.2.1"), &alice, s, now);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), &alice, s, now) > 0);
}

BOOST_AUTO_TEST_CASE(known_sources_are_bounded_per_user_oldest_success_first) {
    KnownSources known(2);
    const auto now = KnownSources::Clock::now();
    for (std::size_t i = 0; i <= KnownSources::kPerUser; ++i)
        known.remember("alice", "s" + std::to_string(i), now + std::chrono::seconds(i));
    BOOST_TEST(!known.contains("alice", "s0", now));
    BOOST_TEST(known.contains("alice", "s1", now));
    BOOST_TEST(known.contains("alice", "s" + std::to_string(KnownSources::kPerUser), now));
    known.remember("bob", "s0", now);
    known.remember("carol", "s0", now);  // two names at most: alice, the least recent, goes
    BOOST_TEST(known.size() == 2u);
    BOOST_TEST(!known.contains("alice", "s1", now));
    BOOST_TEST(known.contains("bob", "s0", now));
}

BOOST_AUTO_TEST_CASE(attempts_in_flight_count_against_the_limits) {
    AuthThrottle t;
    const auto s = settings(3, 5);
    const auto now = AuthThrottle::Clock::now();
    const std::string alice = "alice";
    using Verdict = AuthThrottle::Verdict;
    // Three concurrent guesses from one source: the fourth is refused before any has failed.
    for (int i = 0; i < 3; ++i) BOOST_TEST(t.begin_attempt(addr("192.0.2.1"), &alice, s, now) == 0);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.1"), &alice, s, now) == 1);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.2"), &alice, s, now) == 0);  // another source, the name's 4th
    BOOST_TEST(t.begin_attempt(addr("192.0.2.3"), &alice, s, now) == 0);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.4"), &alice, s, now) == 1);  // the name's limit, in flight
    // The first two fail; the third was right, but the source is blocked by now: no success.
    BOOST_TEST(t.end_attempt(addr("192.0.2.1"), &alice, Verdict::failed, s, now) == 0);
    BOOST_TEST(t.end_attempt(addr("192.0.2.1"), &alice, Verdict::failed, s, now) == 0);
    BOOST_TEST(t.end_attempt(addr("192.0.2.2"), &alice, Verdict::failed, s, now) == 0);
    BOOST_TEST(t.end_attempt(addr("192.0.2.3"), &alice, Verdict::none, s, now) == 0);
    BOOST_TEST(t.blocked_for(addr("192.0.2.1"), nullptr, s, now) == 0);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.1"), nullptr, s, now) == 1);  // 2 failures + 1 in flight
    t.record_failure(addr("192.0.2.1"), nullptr, s, now);                  // from another worker
    BOOST_TEST(t.end_attempt(addr("192.0.2.1"), &alice, Verdict::succeeded, s, now) == 300);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.1"), nullptr, s, now) == 300);
}

BOOST_AUTO_TEST_CASE(ended_attempts_free_their_slots) {
    AuthThrottle t(4);
    const auto s = settings(2, 2);
    const auto now = AuthThrottle::Clock::now();
    const std::string alice = "alice";
    for (int i = 0; i < 100; ++i) {
        BOOST_REQUIRE(t.begin_attempt(addr("192.0.2.1"), &alice, s, now) == 0);
        BOOST_REQUIRE(t.end_attempt(addr("192.0.2.1"), &alice, AuthThrottle::Verdict::succeeded, s, now) == 0);
        BOOST_REQUIRE(t.begin_attempt(addr("192.0.2.1"), &alice, s, now) == 0);
        BOOST_REQUIRE(t.end_attempt(addr("192.0.2.1"), &alice, AuthThrottle::Verdict::none, s, now) == 0);
    }
    t.record_failure(addr("192.0.2.1"), nullptr, s, now);
    BOOST_TEST(t.begin_attempt(addr("192.0.2.1"), nullptr, s, now) == 0);
}

BOOST_AUTO_TEST_CASE(verifier_pool_refuses_beyond_its_queue) {
    VerifierPool pool(1, 2);
    std::atomic<bool> release{false};
    std::atomic<int> started{0};
    std::atomic<int> done{0};
    auto job = [&] {
        ++started;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ++done;
    };
    BOOST_TEST(pool.submit(job));
    for (int i = 0; i < 5000 && started == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    BOOST_REQUIRE(started.load() == 1);  // the only thread is busy; the queue is empty
    BOOST_TEST(pool.submit(job));
    BOOST_TEST(pool.submit(job));
    BOOST_TEST(!pool.submit(job));  // full: refused at once, not queued
    release = true;
    for (int i = 0; i < 5000 && done < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    BOOST_TEST(done.load() == 3);
    pool.stop();
    BOOST_TEST(!pool.submit(job));
}

namespace {

// A pool with one thread kept busy by a job of bucket "flood" until release(); records the
// order in which later jobs run and which were evicted.
struct BusyPool {
    VerifierPool pool;
    std::mutex mutex;
    std::vector<std::string> ran;
    std::vector<std::string> evicted;
    std::atomic<bool> released{false};

    explicit BusyPool(std::size_t queue) : pool(1, queue) {
        std::atomic<int> started{0};
        BOOST_REQUIRE(pool.submit("flood", [this, &started] {
            ++started;
            while (!released) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }));
        for (int i = 0; i < 5000 && started == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        BOOST_REQUIRE(started.load() == 1);
    }
    bool submit(const char* bucket, std::string name) {
        return pool.submit(
            bucket,
            [this, name] {
                std::lock_guard<std::mutex> lock(mutex);
                ran.push_back(name);
            },
            [this, name] { evicted.push_back(name); });
    }
    // Lets the busy job end and waits until `n` jobs ran.
    std::vector<std::string> release(std::size_t n) {
        released = true;
        for (int i = 0; i < 5000; ++i) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (ran.size() >= n) break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        pool.stop();
        return ran;
    }
};

}  // namespace

// One tenant's flood fills the queue; another tenant's check still gets in (the flood's newest
// waiting job is dropped and told so) and runs next, not behind the flood.
BOOST_AUTO_TEST_CASE(verifier_pool_shares_its_queue_between_buckets) {
    BusyPool p(4);
    for (const char* name : {"f1", "f2", "f3", "f4"}) BOOST_TEST(p.submit("flood", name));  // alone: the whole queue
    BOOST_TEST(!p.submit("flood", "f5"));                                                   // full of its own: refused
    BOOST_TEST(p.submit("tenant-b", "b1"));  // flood holds 5 (1 running): its newest goes
    BOOST_TEST(p.evicted == std::vector<std::string>{"f4"});
    BOOST_TEST(p.submit("tenant-c", "c1"));
    BOOST_TEST(p.submit("tenant-b", "b2"));  // flood 3 (running, f1, f2) against tenant-b's 1
    BOOST_TEST(p.evicted == (std::vector<std::string>{"f4", "f3", "f2"}));
    BOOST_TEST(!p.submit("tenant-b", "b3"));  // flood 2, tenant-b 2: nobody is two ahead
    BOOST_TEST(!p.submit("flood", "f6"));
    // The buckets in turn (flood, tenant-b, tenant-c, tenant-b), not in order of arrival.
    BOOST_TEST(p.release(4) == (std::vector<std::string>{"f1", "b1", "c1", "b2"}));
    BOOST_TEST(p.evicted.size() == 3u);  // stop() drops nothing it had not dropped already
}

// A queue of one: the flood's waiting check (its second, beside the running one) yields to a
// newcomer, and the flood cannot take the place back.
BOOST_AUTO_TEST_CASE(verifier_pool_with_a_queue_of_one_still_lets_another_bucket_in) {
    BusyPool p(1);
    BOOST_TEST(p.submit("flood", "f1"));
    BOOST_TEST(p.submit("quiet", "q1"));
    BOOST_TEST(p.evicted == std::vector<std::string>{"f1"});
    BOOST_TEST(!p.submit("flood", "f2"));
    BOOST_TEST(p.release(1) == std::vector<std::string>{"q1"});
}

// Checks run below the event loops' priority, so a wrong-password flood takes spare CPU only.
BOOST_AUTO_TEST_CASE(verifier_pool_checks_run_at_lower_priority) {
    const int ours = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
    VerifierPool pool(1, 2);
    std::atomic<int> seen{-100};
    BOOST_REQUIRE(pool.submit([&] { seen = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid))); }));
    for (int i = 0; i < 5000 && seen == -100; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    BOOST_TEST(seen.load() == std::min(19, ours + VerifierPool::kCheckNice));
    BOOST_TEST(getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid))) == ours);  // the caller keeps its own
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(source_slots)

BOOST_AUTO_TEST_CASE(a_source_gets_its_limit_and_ipv6_counts_by_64) {
    SourceSlots slots;
    for (int i = 0; i < 3; ++i) BOOST_TEST(slots.take(addr("192.0.2.1"), 3));
    BOOST_TEST(!slots.take(addr("192.0.2.1"), 3));
    BOOST_TEST(slots.take(addr("192.0.2.2"), 3));  // another address has its own share
    // An IPv4-mapped address is the same source as its IPv4 form.
    BOOST_TEST(!slots.take(addr("::ffff:192.0.2.1"), 3));
    // Every address of a /64 is one source; the next /64 is another.
    BOOST_TEST(slots.take(addr("2001:db8:0:1::1"), 2));
    BOOST_TEST(slots.take(addr("2001:db8:0:1:ffff::2"), 2));
    BOOST_TEST(!slots.take(addr("2001:db8:0:1::3"), 2));
    BOOST_TEST(slots.take(addr("2001:db8:0:2::1"), 2));
    BOOST_TEST(slots.held(addr("2001:db8:0:1::9")) == 2u);

    slots.release(addr("192.0.2.1"));
    BOOST_TEST(slots.take(addr("192.0.2.1"), 3));  // a slot given back is free again
    BOOST_TEST(slots.take(addr("192.0.2.1"), 0));  // 0: no limit, still counted
    BOOST_TEST(slots.held(addr("192.0.2.1")) == 4u);
    // Sources holding nothing leave the table.
    for (int i = 0; i < 4; ++i) slots.release(addr("192.0.2.1"));
    slots.release(addr("192.0.2.2"));
    slots.release(addr("192.0.2.2"));  // one too many: ignored
    BOOST_TEST(slots.held(addr("192.0.2.2")) == 0u);
    BOOST_TEST(slots.sources() == 2u);  // the two /64s
}

BOOST_AUTO_TEST_SUITE_END()
