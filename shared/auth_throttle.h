#pragma once
// Throttles repeated authentication failures, keyed two ways: per client source (an IPv4
// address, or the /64 an IPv6 address belongs to, since one host usually owns a whole /64) and
// per user name (so guessing one user's password from many sources is bounded too). After
// `max_failures` failures of a source (or `max_failures_per_user` of a name) within `window`,
// it is refused (429) without checking credentials until `cooldown` has passed.
//
// Checks in flight count against the limits: an attempt is begun when its request head arrives
// and ended when its credentials are decided (begin_attempt/end_attempt), and a key is refused
// while its failures plus its attempts in flight reach the limit. Otherwise concurrent requests
// all pass the check before the first failure is recorded (a source would get as many guesses
// as the verification queue holds), and a right guess among them would succeed after the block;
// a success is accepted only if no block applies when it is decided.
//
// A success never clears failures: a client holding valid credentials must not be able to
// reset its own count and keep guessing other passwords. A success does make its source key
// known for that user name (a few per name, for `kKnownSourceTtl`): the per-user block does not
// refuse a known source, so that anyone sending wrong passwords for a name cannot lock the real
// user out of its usual hosts. The per-source block applies to every source. Memory is bounded: beyond a fixed
// number of keys the oldest entries that are not blocked are evicted first; a block is only
// dropped when the whole table is blocks, oldest first (never the table at once).
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "shared/net.h"

namespace dingbridge {

struct AuthThrottleSettings {
    unsigned max_failures = 10;           // per source (IPv4 address or IPv6 /64); 0 = off
    unsigned max_failures_per_user = 50;  // per user name; 0 = off
    std::chrono::milliseconds window{60'000};
    std::chrono::milliseconds cooldown{300'000};
};

// A bounded table of failure counters for one kind of key.
class FailureTable {
public:
    using Clock = std::chrono::steady_clock;
    explicit FailureTable(std::size_t max_entries) : max_entries_(max_entries) {}

    int blocked_for(const std::string& key, Clock::time_point now);
    // Seconds to wait: the block's, or 1 while failures within the window plus attempts in flight
    // reach `max_failures`; 0 = may try.
    int refused_for(const std::string& key, unsigned max_failures, Clock::duration window, Clock::time_point now);
    void begin(const std::string& key, unsigned max_failures, Clock::time_point now);
    void end(const std::string& key);
    void record_failure(const std::string& key, unsigned max_failures, Clock::duration window, Clock::duration cooldown,
                        Clock::time_point now);
    std::size_t size() const { return index_.size(); }

private:
    struct Entry {
        std::string key;
        unsigned failures = 0;
        unsigned in_flight = 0;  // attempts begun and not yet ended
        Clock::time_point window_start;
        Clock::time_point blocked_until;
        bool blocked = false;  // in blocked_ rather than counting_
    };
    using List = std::list<Entry>;
    void make_room(Clock::time_point now);
    List::iterator find_or_add(const std::string& key, Clock::time_point now);  // a new entry counts from `now`

    std::size_t max_entries_;
    List counting_;  // oldest first: evicted first
    List blocked_;   // oldest block first: evicted only when counting_ is empty
    std::unordered_map<std::string, List::iterator> index_;
};

// The source keys from which each user name recently logged in. Bounded: at most
// `kPerUser` sources per name (the least recently successful goes first) and `max_users` names
// (likewise). Only configured users ever succeed, so in practice it holds one entry per user.
class KnownSources {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::size_t kPerUser = 16;

    explicit KnownSources(std::size_t max_users) : max_users_(max_users) {}

    bool contains(const std::string& user, const std::string& source_key, Clock::time_point not_before) const;
    void remember(const std::string& user, const std::string& source_key, Clock::time_point now);
    std::size_t size() const { return index_.size(); }

private:
    struct Source {
        std::string key;
        Clock::time_point last_success;
    };
    struct User {
        std::string name;
        std::vector<Source> sources;  // most recent success last
    };
    using List = std::list<User>;

    std::size_t max_users_;
    List users_;  // least recently successful first: evicted first
    std::unordered_map<std::string, List::iterator> index_;
};

class AuthThrottle {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::size_t kMaxEntries = 65536;  // per table
    // How long a successful login keeps its source exempt from its user name's block: long
    // enough for a tool that logs in daily or weekly, and renewed by every success.
    static constexpr Clock::duration kKnownSourceTtl = std::chrono::hours(24 * 7);

    explicit AuthThrottle(std::size_t max_entries = kMaxEntries)
        : sources_(max_entries), users_(max_entries), known_(max_entries) {}

    // Seconds the source (or, when `user` is non-null, that user name) must still wait; 0 = may try.
    // A user name's block does not apply to a source from which that name recently logged in.
    int blocked_for(const IpAddress& source, const std::string* user, const AuthThrottleSettings& s,
                    Clock::time_point now = Clock::now());
    // How an attempt ended: wrong credentials, the user's right password, or neither (refused
    // for another reason, decided by a certificate, or the check could not run).
    enum class Verdict { failed, succeeded, none };
    // A request with credentials arrived: 0 and the attempt now counts as in flight (end it with
    // end_attempt), or the seconds to wait and nothing is counted.
    int begin_attempt(const IpAddress& source, const std::string* user, const AuthThrottleSettings& s,
                      Clock::time_point now = Clock::now());
    // The attempt begun with the same source and user is decided. A failure is recorded; a
    // success is accepted (and its source becomes known) only if neither block applies now:
    // otherwise the seconds to wait, to be answered with 429 instead.
    int end_attempt(const IpAddress& source, const std::string* user, Verdict verdict, const AuthThrottleSettings& s,
                    Clock::time_point now = Clock::now());
    // A real credential failure (wrong password, unknown user, unusable Proxy-Authorization).
    void record_failure(const IpAddress& source, const std::string* user, const AuthThrottleSettings& s,
                        Clock::time_point now = Clock::now());

    // The throttle key of a source: the IPv4 address, or the IPv6 /64 prefix.
    static std::string source_key(const IpAddress& source);
    // The key of a user name in the per-user tables: the name itself up to 32 bytes, else "#" and
    // its SHA-256 (33 bytes, so never equal to a name's own key). A table entry costs the same
    // whatever name a client makes up: a flood of new kilobyte-long names filled the 65,536
    // entries with two copies of each name (about 800 MB at 5.8 KiB a name).
    static std::string user_key(const std::string& user);

private:
    // `user`'s key in `storage`, or nullptr for no user.
    static const std::string* user_key(const std::string* user, std::string& storage);
    int blocked_locked(const std::string& source_key, const std::string* user, Clock::time_point now);
    void record_failure_locked(const std::string& source_key, const std::string* user, const AuthThrottleSettings& s,
                               Clock::time_point now);

    std::mutex mutex_;
    FailureTable sources_;
    FailureTable users_;
    KnownSources known_;
};

}  // namespace dingbridge
