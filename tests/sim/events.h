#pragma once
// EventHub: delivers org changes the way DingTalk does (dingtalk-api.md §5, §6).
//
// Stream mode: WebSocket connections opened with a ticket from /v1.0/gateway/connections/open.
// Every EVENT is kept until a client ACKs it with status SUCCESS; a LATER (or non-200) ACK is
// redelivered after later_delay, a missing ACK after ack_timeout, and a connection that closes
// hands its in-flight events back to the queue. The hub also sends SYSTEM ping frames and, when
// configured, a periodic SYSTEM disconnect followed by closing the socket after a grace period.
// All stream state lives on the io_context thread; a 100 ms tick drives the timers.
//
// HTTP push mode: a dedicated thread POSTs each event (signed and AES-encrypted, shared/dingtalk_crypto.h) to
// the configured URL, one at a time and in order, retrying with exponential backoff until the
// receiver answers with an encrypted "success". A check_url event is sent first. The push thread
// shares only its queue and counters with the loop thread, under push_mutex_.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/sim/net.h"
#include "tests/sim/sim.h"

namespace sim {

struct EventOptions {
    // HTTP push (§5); disabled when push_url is empty.
    std::string push_url, push_token, push_aes_key;
    std::string push_ca;  // CA file to verify an https push URL; empty = no verification
    int push_retry_ms = 1000, push_retry_max_ms = 60000, push_timeout_ms = 5000;
    // Stream (§6).
    int ack_timeout_ms = 60000;
    int later_delay_ms = 5000;
    int ping_interval_s = 30;
    int disconnect_after_s = 0;  // 0 = never send the periodic disconnect
    int disconnect_grace_s = 10;
    bool fanout_all = true;  // every connection receives each event (else one, round-robin)
    int max_connections = 50;
};

class StreamConn;

class EventHub : public EventSink {
public:
    EventHub(net::io_context& io, EventOptions opts, const SimOptions& sim);
    ~EventHub() override;
    void start();
    void stop();

    // Takes over a TLS stream whose HTTP upgrade request carried a valid ticket.
    void accept_stream(TlsStream stream, http::request<http::string_body> req, StreamTicket ticket);

    void publish(const OrgEvent& e) override;
    void write_status(JsonWriter& w) const override;
    void force_disconnect(std::string_view reason) override;
    void cut_connections() override;
    void set_event_faults(int drop_next, int delay_ms) override;

    // Called by StreamConn.
    void on_frame(StreamConn& c, const std::string& text);
    void on_closed(StreamConn& c);

private:
    struct StreamEvent {
        std::string event_id, message_id, type, data;
        int64_t born_ms = 0;
        bool acked = false;
        int deliveries = 0, later = 0;
        std::set<uint64_t> inflight;  // connection ids awaiting an ACK
        std::chrono::steady_clock::time_point sent_at, next_at;
    };
    struct PushItem {
        std::string event_id, type, payload;
        bool delivered = false;
        int attempts = 0;
        std::string last_error;
    };

    void tick();
    void pump();
    bool deliver(StreamEvent& e);
    std::string event_frame(const StreamEvent& e, const StreamConn& c) const;
    void push_loop();
    bool push_once(const PushItem& item, std::string& error);

    net::io_context& io_;
    EventOptions opts_;
    SimOptions sim_;
    net::steady_timer ticker_;
    std::map<uint64_t, std::shared_ptr<StreamConn>> conns_;
    uint64_t next_conn_id_ = 1;
    uint64_t rr_ = 0;
    std::deque<StreamEvent> events_;
    std::set<size_t> pending_;  // indexes into events_ not yet acked
    int drop_next_ = 0, delay_ms_ = 0;
    uint64_t dropped_ = 0, cuts_ = 0;
    uint64_t pings_sent_ = 0, pongs_ = 0, disconnects_sent_ = 0, acks_ = 0, laters_ = 0, redeliveries_ = 0;
    uint64_t connections_total_ = 0;
    bool stopped_ = false;

    mutable std::mutex push_mutex_;
    std::condition_variable push_cv_;
    std::deque<PushItem> push_items_;
    size_t push_next_ = 0;  // first undelivered item
    bool push_stop_ = false;
    std::thread push_thread_;
};

}  // namespace sim
