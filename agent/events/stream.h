#pragma once
// StreamClient: DingTalk stream mode (dingtalk-api.md §6) through dingbridge-proxy. On its own
// thread: POST /v1.0/gateway/connections/open (libcurl, same proxy/CA settings as every other
// DingTalk call), then the returned wss:// endpoint opened with Boost.Beast over a CONNECT
// tunnel (Basic auth to the proxy), TLS verified end to end with SNI for the endpoint host, and
// the WebSocket handshake with ?ticket=. Handles SYSTEM ping (echo) and disconnect (ACK, then a
// fresh open), EVENT frames (ACK SUCCESS only after `on_event` durably journaled the event,
// LATER otherwise), WebSocket keep-alive pings with an idle timeout, and reconnects with
// exponential backoff and full jitter. Frames that cannot be parsed are logged and not ACKed.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "agent/dingtalk/http.h"
#include "agent/events/journal.h"

namespace dingbridge::agent::events {

struct StreamSettings {
    std::string api_base = "https://api.dingtalk.com";
    std::string app_key;
    std::string app_secret;  // secret: only in the connections/open body
    dingtalk::TransportSettings transport;
    std::chrono::milliseconds backoff_min{1000};
    std::chrono::milliseconds backoff_max{60000};
    std::chrono::seconds idle_timeout{60};  // WebSocket ping after half of it, drop after all of it
};

struct StreamStats {
    std::atomic<bool> connected{false};
    std::atomic<std::uint64_t> opens{0}, open_failures{0}, connects{0}, reconnects{0}, frames{0}, events{0},
        duplicates{0}, later{0}, bad_frames{0}, pings{0}, disconnects{0};
};

class StreamClient {
public:
    // Called on the stream thread for every EVENT; returns true when the event is durably
    // journaled (inserted or already there), false to answer LATER.
    using OnEvent = std::function<bool(JournalEvent&&)>;

    StreamClient(StreamSettings settings, OnEvent on_event);
    ~StreamClient();
    void start();
    void stop();
    StreamStats& stats() { return stats_; }

private:
    struct Impl;
    void thread_main();
    bool open(std::string& endpoint, std::string& ticket, std::string& error);
    bool sleep_for(std::chrono::milliseconds d);

    StreamSettings settings_;
    OnEvent on_event_;
    StreamStats stats_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> finished_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::thread thread_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dingbridge::agent::events
