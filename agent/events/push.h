#pragma once
// PushReceiver: DingTalk's HTTP push (dingtalk-api.md §5) for `run` with events.mode http.
// Every request is checked before anything is trusted: POST to the configured path, the
// signature over (token, timestamp, nonce, encrypt) (msg_signature/signature and
// timeStamp/timestamp are both accepted), a timestamp within max_skew of now (a replayed old
// push is refused), a JSON body {"encrypt": ...} that decrypts with the aes_key and ends with
// the owner key (the AppKey for console subscriptions). Refusals are 4xx and change nothing.
// check_url is answered at once; an event is answered with the encrypted "success" only after
// `on_event` says it is durably journaled (dedup by eventId, else a hash of the decrypted
// payload), else 503 so that DingTalk pushes it again. Never throws; never logs the secrets.
// Not thread-safe: called from the HttpServer's one thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "agent/events/http_server.h"
#include "agent/events/journal.h"

namespace dingbridge::agent::events {

struct PushSettings {
    std::string path = "/dingtalk/push";
    std::string token, aes_key, owner_key;
    std::chrono::seconds max_skew{300};
};

struct PushStats {
    std::atomic<std::uint64_t> events{0};    // events journaled (or duplicates) and answered success
    std::atomic<std::uint64_t> rejected{0};  // 4xx answers
    std::atomic<std::uint64_t> later{0};     // 503: journal unavailable
};

class PushReceiver {
public:
    using OnEvent = std::function<bool(JournalEvent&&)>;  // true = durably journaled
    PushReceiver(PushSettings settings, OnEvent on_event);
    HttpReply handle(const HttpRequestView& request);
    const PushStats& stats() const { return stats_; }
    // The encrypted success reply (JSON), or "" when the key is unusable.
    std::string success_reply() const;

private:
    HttpReply reject(int status, const std::string& why);
    static constexpr int kLogPerMinute = 20;
    std::int64_t log_minute_ = 0;
    int log_count_ = 0;
    std::int64_t log_suppressed_ = 0;
    PushSettings s_;
    OnEvent on_event_;
    PushStats stats_;
};

}  // namespace dingbridge::agent::events
