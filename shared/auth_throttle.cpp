#include "shared/auth_throttle.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>

namespace dingbridge {

namespace {

int seconds_until(FailureTable::Clock::time_point until, FailureTable::Clock::time_point now) {
    if (until <= now) return 0;
    const double seconds = std::chrono::duration<double>(until - now).count();
    return std::max(1, static_cast<int>(std::ceil(seconds)));
}

}  // namespace

int FailureTable::blocked_for(const std::string& key, Clock::time_point now) {
    auto it = index_.find(key);
    if (it == index_.end() || !it->second->blocked) return 0;
    return seconds_until(it->second->blocked_until, now);
}

int FailureTable::refused_for(const std::string& key, unsigned max_failures, Clock::duration window,
                              Clock::time_point now) {
    auto it = index_.find(key);
    if (it == index_.end() || max_failures == 0) return 0;
    const Entry& e = *it->second;
    if (e.blocked && e.blocked_until > now) return seconds_until(e.blocked_until, now);
    const unsigned failures = e.blocked || now - e.window_start > window ? 0 : e.failures;
    return failures + e.in_flight >= max_failures ? 1 : 0;  // a check in flight ends within seconds
}

FailureTable::List::iterator FailureTable::find_or_add(const std::string& key, Clock::time_point now) {
    auto found = index_.find(key);
    if (found != index_.end()) return found->second;
    make_room(now);
    counting_.push_back(Entry{key, 0, 0, now, {}, false});
    return index_.emplace(key, std::prev(counting_.end())).first->second;
}

void FailureTable::begin(const std::string& key, unsigned max_failures, Clock::time_point now) {
    if (max_failures == 0 || max_entries_ == 0) return;  // throttling disabled
    ++find_or_add(key, now)->in_flight;
}

void FailureTable::end(const std::string& key) {
    auto found = index_.find(key);
    if (found == index_.end()) return;  // evicted meanwhile (or throttling was off when it began)
    List::iterator e = found->second;
    if (e->in_flight > 0) --e->in_flight;
    // An entry that only counted attempts in flight goes, so that successes fill no table.
    if (!e->blocked && e->failures == 0 && e->in_flight == 0) {
        index_.erase(found);
        counting_.erase(e);
    }
}

void FailureTable::make_room(Clock::time_point now) {
    // Expired blocks go first, then the oldest counting entry, then (only when every entry is a
    // live block) the oldest block: the table never forgets all blocks at once.
    while (!blocked_.empty() && blocked_.front().blocked_until <= now && index_.size() >= max_entries_) {
        index_.erase(blocked_.front().key);
        blocked_.pop_front();
    }
    if (index_.size() < max_entries_) return;
    List& victim = counting_.empty() ? blocked_ : counting_;
    index_.erase(victim.front().key);
    victim.pop_front();
}

void FailureTable::record_failure(const std::string& key, unsigned max_failures, Clock::duration window,
                                  Clock::duration cooldown, Clock::time_point now) {
    if (max_failures == 0 || max_entries_ == 0) return;  // throttling disabled
    List::iterator e = find_or_add(key, now);
    if (e->blocked) {
        if (e->blocked_until > now) return;  // still blocked: nothing to count
        // The block expired: count afresh, as the newest counting entry.
        e->blocked = false;
        e->failures = 0;
        counting_.splice(counting_.end(), blocked_, e);
    }
    if (e->failures == 0 || now - e->window_start > window) {
        e->failures = 0;
        e->window_start = now;
    }
    if (++e->failures >= max_failures) {
        e->blocked = true;
        e->blocked_until = now + cooldown;
        e->failures = 0;
        blocked_.splice(blocked_.end(), counting_, e);
    }
}

bool KnownSources::contains(const std::string& user, const std::string& source_key,
                            Clock::time_point not_before) const {
    const auto it = index_.find(user);
    if (it == index_.end()) return false;
    for (const Source& s : it->second->sources)
        if (s.key == source_key) return s.last_success >= not_before;
    return false;
}

void KnownSources::remember(const std::string& user, const std::string& source_key, Clock::time_point now) {
    if (max_users_ == 0) return;
    auto found = index_.find(user);
    if (found == index_.end()) {
        if (index_.size() >= max_users_) {
            index_.erase(users_.front().name);
            users_.pop_front();
        }
        users_.push_back(User{user, {}});
        found = index_.emplace(user, std::prev(users_.end())).first;
    }
    users_.splice(users_.end(), users_, found->second);  // the most recent success is evicted last
    std::vector<Source>& sources = found->second->sources;
    const auto same =
        std::find_if(sources.begin(), sources.end(), [&](const Source& s) { return s.key == source_key; });
    if (same != sources.end())
        sources.erase(same);
    else if (sources.size() >= kPerUser)
        sources.erase(sources.begin());
    sources.push_back(Source{source_key, now});
}

std::string AuthThrottle::source_key(const IpAddress& source) {
    // IpAddress::source() decides what one source is; the key keeps only its significant bytes
    // (IPv4 is stored v4-mapped: its last 4; an IPv6 /64: its first 8), so it stays short.
    const IpAddress one = source.source();
    const auto& b = one.bytes();
    if (source.is_v4()) return std::string("4") + std::string(reinterpret_cast<const char*>(b.data()) + 12, 4);
    return std::string("6") + std::string(reinterpret_cast<const char*>(b.data()), 8);
}

std::string AuthThrottle::user_key(const std::string& user) {
    constexpr std::size_t kLongest = 32;
    if (user.size() <= kLongest) return user;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(user.data(), user.size(), digest, &length, EVP_sha256(), nullptr) != 1)
        return "#" + user.substr(0, kLongest);  // not seen in practice; still bounded
    return "#" + std::string(reinterpret_cast<const char*>(digest), length);
}

const std::string* AuthThrottle::user_key(const std::string* user, std::string& storage) {
    if (user == nullptr) return nullptr;
    storage = user_key(*user);
    return &storage;
}

int AuthThrottle::blocked_locked(const std::string& key, const std::string* user, Clock::time_point now) {
    int wait = sources_.blocked_for(key, now);
    if (user != nullptr && !known_.contains(*user, key, now - kKnownSourceTtl))
        wait = std::max(wait, users_.blocked_for(*user, now));
    return wait;
}

void AuthThrottle::record_failure_locked(const std::string& key, const std::string* user, const AuthThrottleSettings& s,
                                         Clock::time_point now) {
    sources_.record_failure(key, s.max_failures, s.window, s.cooldown, now);
    if (user != nullptr) users_.record_failure(*user, s.max_failures_per_user, s.window, s.cooldown, now);
}

int AuthThrottle::blocked_for(const IpAddress& source, const std::string* name, const AuthThrottleSettings&,
                              Clock::time_point now) {
    std::string storage;
    const std::string* user = user_key(name, storage);
    std::lock_guard<std::mutex> lock(mutex_);
    return blocked_locked(source_key(source), user, now);
}

int AuthThrottle::begin_attempt(const IpAddress& source, const std::string* name, const AuthThrottleSettings& s,
                                Clock::time_point now) {
    std::string storage;
    const std::string* user = user_key(name, storage);
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string key = source_key(source);
    int wait = sources_.refused_for(key, s.max_failures, s.window, now);
    if (user != nullptr && !known_.contains(*user, key, now - kKnownSourceTtl))
        wait = std::max(wait, users_.refused_for(*user, s.max_failures_per_user, s.window, now));
    if (wait > 0) return wait;
    sources_.begin(key, s.max_failures, now);
    if (user != nullptr) users_.begin(*user, s.max_failures_per_user, now);
    return 0;
}

int AuthThrottle::end_attempt(const IpAddress& source, const std::string* name, Verdict verdict,
                              const AuthThrottleSettings& s, Clock::time_point now) {
    std::string storage;
    const std::string* user = user_key(name, storage);
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string key = source_key(source);
    sources_.end(key);
    if (user != nullptr) users_.end(*user);
    switch (verdict) {
        case Verdict::failed:
            record_failure_locked(key, user, s, now);
            return 0;
        case Verdict::succeeded:
            if (const int wait = blocked_locked(key, user, now)) return wait;
            if (user != nullptr) known_.remember(*user, key, now);
            return 0;
        case Verdict::none:
            return 0;
    }
    return 0;
}

void AuthThrottle::record_failure(const IpAddress& source, const std::string* name, const AuthThrottleSettings& s,
                                  Clock::time_point now) {
    std::string storage;
    const std::string* user = user_key(name, storage);
    std::lock_guard<std::mutex> lock(mutex_);
    record_failure_locked(source_key(source), user, s, now);
}

}  // namespace dingbridge
