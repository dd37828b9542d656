#include "tests/sim/events.h"

#include <spdlog/spdlog.h>

#include "shared/dingtalk_crypto.h"

namespace sim {
namespace crypto = dingbridge::dingtalk_crypto;  // shared/dingtalk_crypto.h

using Clock = std::chrono::steady_clock;

// One stream-mode WebSocket. Owned by EventHub::conns_ while open; pending async operations
// hold a shared_ptr so the object outlives its last callback. Loop thread only.
class StreamConn : public std::enable_shared_from_this<StreamConn> {
public:
    StreamConn(EventHub& hub, uint64_t id, TlsStream s, StreamTicket t)
        : id_(id), connection_id_(crypto::random_alnum(24)), ticket_(std::move(t)), hub_(hub), ws_(std::move(s)) {}

    void start(http::request<http::string_body> req) {
        beast::get_lowest_layer(ws_).expires_never();
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return self->report_closed("accept: " + ec.message());
            self->open_ = true;
            self->do_read();
            self->hub_.on_frame(*self, std::string());  // empty frame = "opened": lets the hub pump
        });
    }

    void send(std::string text) {
        if (!open_ || closed_) return;
        outq_.push_back(std::move(text));
        if (!writing_) do_write();
    }

    // Abrupt loss of the connection (network, proxy restart): no close frame.
    void cut() {
        if (closed_) return;
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(ws_).socket().close(ec);
    }

    void close() {
        if (closing_ || closed_) return;
        closing_ = true;
        if (!open_) return;
        ws_.async_close(websocket::close_code::going_away,
                        [self = shared_from_this()](beast::error_code) { self->report_closed("closed by server"); });
    }

    bool wants(const std::string& event_type) const {
        if (ticket_.subscriptions.empty()) return true;
        for (const auto& [type, topic] : ticket_.subscriptions)
            if (type == "EVENT" && (topic == "*" || topic == event_type)) return true;
        return false;
    }

    uint64_t id_;
    std::string connection_id_;
    StreamTicket ticket_;
    bool open_ = false, closing_ = false, closed_ = false;
    Clock::time_point opened_at_ = Clock::now();
    Clock::time_point next_ping_ = Clock::time_point::max();
    Clock::time_point close_at_ = Clock::time_point::max();
    bool disconnect_sent_ = false;
    std::set<std::string> ping_ids_;

private:
    void do_read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->report_closed(ec.message());
            std::string text = beast::buffers_to_string(self->buf_.data());
            self->buf_.consume(self->buf_.size());
            if (!text.empty()) self->hub_.on_frame(*self, text);
            if (!self->closed_) self->do_read();
        });
    }

    void do_write() {
        writing_ = true;
        ws_.text(true);
        ws_.async_write(net::buffer(outq_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->outq_.pop_front();
            self->writing_ = false;
            if (ec) return self->report_closed("write: " + ec.message());
            if (!self->outq_.empty() && !self->closed_) self->do_write();
        });
    }

    void report_closed(const std::string& why) {
        if (closed_) return;
        closed_ = true;
        spdlog::info("stream connection {} closed: {}", connection_id_, why);
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().close(ec);
        hub_.on_closed(*this);  // may drop the hub's reference; our caller still holds one
    }

    EventHub& hub_;
    WsStream ws_;
    beast::flat_buffer buf_;
    std::deque<std::string> outq_;
    bool writing_ = false;
};

EventHub::EventHub(net::io_context& io, EventOptions opts, const SimOptions& sim)
    : io_(io), opts_(std::move(opts)), sim_(sim), ticker_(io) {}

EventHub::~EventHub() { stop(); }

void EventHub::start() {
    if (!opts_.push_url.empty()) {
        {
            std::lock_guard lk(push_mutex_);
            push_items_.push_back(PushItem{"check_url", "check_url", "{\"EventType\":\"check_url\"}", false, 0, ""});
        }
        push_thread_ = std::thread([this] { push_loop(); });
    }
    tick();
}

void EventHub::stop() {
    if (stopped_) return;
    stopped_ = true;
    ticker_.cancel();
    {
        std::lock_guard lk(push_mutex_);
        push_stop_ = true;
    }
    push_cv_.notify_all();
    if (push_thread_.joinable()) push_thread_.join();
}

void EventHub::accept_stream(TlsStream stream, http::request<http::string_body> req, StreamTicket ticket) {
    auto c = std::make_shared<StreamConn>(*this, next_conn_id_++, std::move(stream), std::move(ticket));
    if (opts_.ping_interval_s > 0) c->next_ping_ = Clock::now() + std::chrono::seconds(opts_.ping_interval_s);
    conns_[c->id_] = c;
    ++connections_total_;
    c->start(std::move(req));
}

void EventHub::cut_connections() {
    for (auto& [id, c] : conns_) {
        if (c->closed_) continue;
        c->cut();
        ++cuts_;
    }
}

void EventHub::set_event_faults(int drop_next, int delay_ms) {
    drop_next_ = drop_next;
    delay_ms_ = delay_ms;
}

void EventHub::publish(const OrgEvent& e) {
    const int64_t now = wall_ms();
    if (drop_next_ > 0) {  // lost on DingTalk's side: neither stream nor push will see it
        --drop_next_;
        ++dropped_;
        return;
    }
    const std::string event_id = crypto::random_alnum(32);
    // Stream data: camelCase, ids as arrays, timeStamp a string (§6).
    {
        JsonWriter d;
        d.begin_object().kv("timeStamp", std::to_string(now)).kv("eventId", event_id);
        d.kv("optStaffId", "sim-admin").kv("corpId", sim_.corp_id);
        if (!e.user_ids.empty()) d.kv_list("userId", e.user_ids);
        if (!e.dept_ids.empty()) d.kv_list("deptId", e.dept_ids);
        d.end_object();
        StreamEvent se;
        se.event_id = event_id;
        se.message_id = crypto::random_alnum(32);
        se.type = e.event_type;
        se.data = d.take();
        se.born_ms = now;
        se.next_at = Clock::now() + std::chrono::milliseconds(delay_ms_);
        events_.push_back(std::move(se));
        pending_.insert(events_.size() - 1);
    }
    // HTTP push: PascalCase keys (§5).
    if (!opts_.push_url.empty()) {
        JsonWriter p;
        p.begin_object().kv("EventType", e.event_type).kv("CorpId", sim_.corp_id);
        if (!e.user_ids.empty()) p.kv_list("UserId", e.user_ids);
        if (!e.dept_ids.empty()) p.kv_list("DeptId", e.dept_ids);
        if (e.event_type.rfind("user_", 0) == 0) p.kv("OptStaffId", "sim-admin");
        p.kv("TimeStamp", std::to_string(now)).kv("eventId", event_id).end_object();
        {
            std::lock_guard lk(push_mutex_);
            push_items_.push_back(PushItem{event_id, e.event_type, p.take(), false, 0, ""});
        }
        push_cv_.notify_all();
    }
    pump();
}

std::string EventHub::event_frame(const StreamEvent& e, const StreamConn& c) const {
    JsonWriter w;
    w.begin_object().kv("specVersion", "1.0").kv("type", "EVENT").key("headers").begin_object();
    w.kv("appId", sim_.app_id).kv("connectionId", c.connection_id_).kv("contentType", "application/json");
    w.kv("messageId", e.message_id).kv("time", std::to_string(wall_ms())).kv("topic", "*");
    w.kv("eventId", e.event_id).kv("eventBornTime", std::to_string(e.born_ms));
    w.kv("eventCorpId", sim_.corp_id).kv("eventType", e.type).kv("eventUnifiedAppId", sim_.app_id);
    w.end_object().kv("data", e.data).end_object();
    return w.take();
}

bool EventHub::deliver(StreamEvent& e) {
    std::vector<StreamConn*> targets;
    for (auto& [id, c] : conns_)
        if (c->open_ && !c->closing_ && !c->disconnect_sent_ && c->wants(e.type)) targets.push_back(c.get());
    if (targets.empty()) return false;
    if (!opts_.fanout_all || e.deliveries > 0) {
        StreamConn* one = targets[rr_++ % targets.size()];
        targets = {one};
    }
    for (StreamConn* c : targets) {
        c->send(event_frame(e, *c));
        e.inflight.insert(c->id_);
    }
    if (e.deliveries > 0) ++redeliveries_;
    ++e.deliveries;
    e.sent_at = Clock::now();
    return true;
}

void EventHub::pump() {
    const auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
        StreamEvent& e = events_[*it];
        if (e.acked) {
            it = pending_.erase(it);
            continue;
        }
        if (!e.inflight.empty() && now - e.sent_at > std::chrono::milliseconds(opts_.ack_timeout_ms)) {
            e.inflight.clear();  // no ACK in time: redeliver (§6)
            e.next_at = now;
        }
        if (e.inflight.empty() && e.next_at <= now) deliver(e);
        ++it;
    }
}

void EventHub::on_frame(StreamConn& c, const std::string& text) {
    if (text.empty()) {  // connection just opened
        pump();
        return;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
        spdlog::warn("stream {}: unparsable client frame", c.connection_id_);
        return;
    }
    std::string_view mid, data;
    int64_t code = 0;
    if (doc["headers"]["messageId"].get(mid) != simdjson::SUCCESS) mid = {};
    if (doc["code"].get(code) != simdjson::SUCCESS) code = 0;
    if (doc["data"].get(data) != simdjson::SUCCESS) data = {};
    if (c.ping_ids_.erase(std::string(mid))) {
        ++pongs_;
        return;
    }
    for (size_t i : pending_) {
        StreamEvent& e = events_[i];
        if (e.message_id != mid) continue;
        if (!e.inflight.erase(c.id_)) return;  // late or duplicate ACK
        std::string_view status;
        simdjson::dom::parser p2;
        simdjson::dom::element d;
        if (!data.empty() && p2.parse(data.data(), data.size()).get(d) == simdjson::SUCCESS) {
            if (d["status"].get(status) != simdjson::SUCCESS) status = {};
        }
        if (code == 200 && status != "LATER") {
            e.acked = true;
            ++acks_;
        } else {
            ++e.later;
            ++laters_;
            if (e.inflight.empty()) e.next_at = Clock::now() + std::chrono::milliseconds(opts_.later_delay_ms);
        }
        return;
    }
}

void EventHub::on_closed(StreamConn& c) {
    const uint64_t id = c.id_;
    for (size_t i : pending_) {
        StreamEvent& e = events_[i];
        if (e.inflight.erase(id) && e.inflight.empty() && !e.acked) e.next_at = Clock::now();
    }
    net::post(io_, [this, id] {  // erase outside the connection's own callback
        conns_.erase(id);
        pump();
    });
}

void EventHub::force_disconnect(std::string_view reason) {
    for (auto& [id, c] : conns_) {
        if (!c->open_ || c->disconnect_sent_) continue;
        JsonWriter d;
        d.begin_object().kv("reason", reason).end_object();
        JsonWriter w;
        w.begin_object().kv("specVersion", "1.0").kv("type", "SYSTEM").key("headers").begin_object();
        w.kv("contentType", "application/json").kv("messageId", crypto::random_alnum(32));
        w.kv("time", std::to_string(wall_ms())).kv("topic", "disconnect").end_object();
        w.kv("data", d.str()).end_object();
        c->send(w.take());
        c->disconnect_sent_ = true;
        c->close_at_ = Clock::now() + std::chrono::seconds(opts_.disconnect_grace_s);
        ++disconnects_sent_;
    }
}

void EventHub::tick() {
    if (stopped_) return;
    const auto now = Clock::now();
    bool periodic = false;
    for (auto& [id, c] : conns_) {
        if (!c->open_ || c->closed_) continue;
        if (now >= c->close_at_) {
            c->close();
            continue;
        }
        if (now >= c->next_ping_ && !c->disconnect_sent_) {
            std::string opaque = crypto::random_alnum(16), mid = crypto::random_alnum(32);
            JsonWriter w;
            w.begin_object().kv("specVersion", "1.0").kv("type", "SYSTEM").key("headers").begin_object();
            w.kv("contentType", "application/json").kv("messageId", mid).kv("time", std::to_string(wall_ms()));
            w.kv("topic", "ping").end_object().kv("data", "{\"opaque\":\"" + opaque + "\"}").end_object();
            c->ping_ids_.insert(mid);
            if (c->ping_ids_.size() > 100) c->ping_ids_.erase(c->ping_ids_.begin());
            c->send(w.take());
            ++pings_sent_;
            c->next_ping_ = now + std::chrono::seconds(opts_.ping_interval_s);
        }
        if (opts_.disconnect_after_s > 0 && !c->disconnect_sent_ &&
            now - c->opened_at_ >= std::chrono::seconds(opts_.disconnect_after_s))
            periodic = true;
    }
    if (periodic) {
        // Sends to every eligible connection; connections opened recently are not yet due, but a
        // shared periodic schedule matches "the server sends disconnect periodically" well enough.
        for (auto& [id, c] : conns_)
            if (c->open_ && !c->disconnect_sent_ &&
                now - c->opened_at_ >= std::chrono::seconds(opts_.disconnect_after_s)) {
                JsonWriter w;
                w.begin_object().kv("specVersion", "1.0").kv("type", "SYSTEM").key("headers").begin_object();
                w.kv("contentType", "application/json").kv("messageId", crypto::random_alnum(32));
                w.kv("time", std::to_string(wall_ms())).kv("topic", "disconnect").end_object();
                w.kv("data", "{\"reason\":\"periodic reconnect\"}").end_object();
                c->send(w.take());
                c->disconnect_sent_ = true;
                c->close_at_ = now + std::chrono::seconds(opts_.disconnect_grace_s);
                ++disconnects_sent_;
            }
    }
    pump();
    ticker_.expires_after(std::chrono::milliseconds(100));
    ticker_.async_wait([this](beast::error_code ec) {
        if (!ec) tick();
    });
}

void EventHub::write_status(JsonWriter& w) const {
    w.begin_object().key("stream").begin_object();
    w.kv("connections_open", static_cast<int64_t>(conns_.size())).kv("connections_total", connections_total_);
    w.kv("pings_sent", pings_sent_).kv("pongs", pongs_).kv("acks", acks_).kv("laters", laters_);
    w.kv("redeliveries", redeliveries_).kv("disconnects_sent", disconnects_sent_);
    w.kv("pending", static_cast<int64_t>(pending_.size())).kv("dropped", dropped_).kv("cuts", cuts_);
    w.key("connections").begin_array();
    for (const auto& [id, c] : conns_)
        w.begin_object()
            .kv("id", id)
            .kv("connection_id", c->connection_id_)
            .kv("open", c->open_ && !c->closed_)
            .kv("disconnect_sent", c->disconnect_sent_)
            .end_object();
    w.end_array();
    w.key("events").begin_array();
    size_t from = events_.size() > 1000 ? events_.size() - 1000 : 0;
    for (size_t i = from; i < events_.size(); ++i) {
        const auto& e = events_[i];
        w.begin_object().kv("event_id", e.event_id).kv("message_id", e.message_id).kv("type", e.type);
        w.kv("acked", e.acked).kv("deliveries", e.deliveries).kv("later", e.later).end_object();
    }
    w.end_array().end_object();
    w.key("push").begin_object().kv("enabled", !opts_.push_url.empty());
    {
        std::lock_guard lk(push_mutex_);
        w.key("items").begin_array();
        for (const auto& p : push_items_) {
            w.begin_object().kv("event_id", p.event_id).kv("type", p.type).kv("delivered", p.delivered);
            w.kv("attempts", p.attempts).kv("last_error", p.last_error).end_object();
        }
        w.end_array();
    }
    w.end_object().end_object();
}

// ---- HTTP push (own thread, blocking I/O with socket timeouts) ----

namespace {
struct Url {
    bool tls = false;
    std::string host, port, target;
};

bool parse_url(const std::string& u, Url& out) {
    std::string_view s = u;
    if (s.rfind("https://", 0) == 0) {
        out.tls = true;
        s.remove_prefix(8);
    } else if (s.rfind("http://", 0) == 0) {
        s.remove_prefix(7);
    } else {
        return false;
    }
    auto slash = s.find('/');
    std::string_view hostport = s.substr(0, slash);
    out.target = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
    if (!hostport.empty() && hostport.front() == '[') {
        auto close = hostport.find(']');
        if (close == std::string_view::npos) return false;
        out.host = std::string(hostport.substr(1, close - 1));
        hostport.remove_prefix(close + 1);
        out.port = hostport.size() > 1 && hostport[0] == ':' ? std::string(hostport.substr(1)) : "";
    } else {
        auto colon = hostport.rfind(':');
        out.host = std::string(hostport.substr(0, colon));
        out.port = colon == std::string_view::npos ? "" : std::string(hostport.substr(colon + 1));
    }
    if (out.port.empty()) out.port = out.tls ? "443" : "80";
    return !out.host.empty();
}

void set_timeouts(tcp::socket& s, int ms) {
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

template <class Stream>
bool exchange(Stream& s, const http::request<http::string_body>& req, http::response<http::string_body>& res,
              std::string& error) {
    beast::error_code ec;
    http::write(s, req, ec);
    if (ec) {
        error = "write: " + ec.message();
        return false;
    }
    beast::flat_buffer buf;
    http::read(s, buf, res, ec);
    if (ec) {
        error = "read: " + ec.message();
        return false;
    }
    return true;
}
}  // namespace

bool EventHub::push_once(const PushItem& item, std::string& error) {
    Url url;
    if (!parse_url(opts_.push_url, url)) {
        error = "push URL must be http:// or https://";
        return false;
    }
    const std::string ts = std::to_string(wall_ms()), nonce = crypto::random_alnum(16);
    auto enc = crypto::encrypt(opts_.push_aes_key, sim_.app_key, item.payload);
    if (!enc) {
        error = "bad aes_key";
        return false;
    }
    const std::string sig = crypto::signature(opts_.push_token, ts, nonce, *enc);
    http::request<http::string_body> req{http::verb::post,
                                         url.target + (url.target.find('?') == std::string::npos ? "?" : "&") +
                                             "msg_signature=" + sig + "&timeStamp=" + ts + "&nonce=" + nonce,
                                         11};
    req.set(http::field::host, url.host + ":" + url.port);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "dingtalk-sim");
    req.body() = "{\"encrypt\":\"" + *enc + "\"}";
    req.prepare_payload();
    // check_url must be answered within 1500 ms (§5).
    const int timeout = item.type == "check_url" ? 1500 : opts_.push_timeout_ms;

    net::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto results = resolver.resolve(url.host, url.port, ec);
    if (ec) {
        error = "resolve: " + ec.message();
        return false;
    }
    http::response<http::string_body> res;
    if (url.tls) {
        ssl::context ctx(ssl::context::tls_client);
        if (!opts_.push_ca.empty()) {
            ctx.load_verify_file(opts_.push_ca, ec);
            ctx.set_verify_mode(ssl::verify_peer);
        } else {
            ctx.set_verify_mode(ssl::verify_none);
        }
        ssl::stream<tcp::socket> s(ioc, ctx);
        SSL_set_tlsext_host_name(s.native_handle(), url.host.c_str());
        net::connect(s.next_layer(), results, ec);
        if (ec) {
            error = "connect: " + ec.message();
            return false;
        }
        set_timeouts(s.next_layer(), timeout);
        s.handshake(ssl::stream_base::client, ec);
        if (ec) {
            error = "tls: " + ec.message();
            return false;
        }
        if (!exchange(s, req, res, error)) return false;
        s.shutdown(ec);
    } else {
        tcp::socket s(ioc);
        net::connect(s, results, ec);
        if (ec) {
            error = "connect: " + ec.message();
            return false;
        }
        set_timeouts(s, timeout);
        if (!exchange(s, req, res, error)) return false;
    }
    if (res.result_int() != 200) {
        error = "HTTP " + std::to_string(res.result_int());
        return false;
    }
    // The receiver must answer with the encrypted "success" (§5); anything else is a failure.
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(res.body()).get(doc) != simdjson::SUCCESS) {
        error = "reply is not JSON";
        return false;
    }
    std::string_view rsig, rnonce, renc;
    std::string rts;
    std::string_view tsv;
    int64_t tsi = 0;
    if (doc["timeStamp"].get(tsv) == simdjson::SUCCESS)
        rts = std::string(tsv);
    else if (doc["timeStamp"].get(tsi) == simdjson::SUCCESS)
        rts = std::to_string(tsi);
    if (doc["msg_signature"].get(rsig) != simdjson::SUCCESS || doc["nonce"].get(rnonce) != simdjson::SUCCESS ||
        doc["encrypt"].get(renc) != simdjson::SUCCESS || rts.empty()) {
        error = "reply lacks msg_signature/timeStamp/nonce/encrypt";
        return false;
    }
    if (crypto::signature(opts_.push_token, rts, rnonce, renc) != rsig) {
        error = "reply signature mismatch";
        return false;
    }
    std::string derr;
    auto msg = crypto::decrypt(opts_.push_aes_key, renc, sim_.app_key, derr);
    if (!msg) {
        error = "reply: " + derr;
        return false;
    }
    if (*msg != "success") {
        error = "reply decrypts to '" + msg->substr(0, 64) + "', not 'success'";
        return false;
    }
    return true;
}

void EventHub::push_loop() {
    int delay = opts_.push_retry_ms;
    for (;;) {
        PushItem item;
        {
            std::unique_lock lk(push_mutex_);
            push_cv_.wait(lk, [this] { return push_stop_ || push_next_ < push_items_.size(); });
            if (push_stop_) return;
            item = push_items_[push_next_];
        }
        std::string error;
        bool ok = push_once(item, error);
        {
            std::lock_guard lk(push_mutex_);
            auto& it = push_items_[push_next_];
            ++it.attempts;
            it.last_error = error;
            if (ok) {
                it.delivered = true;
                ++push_next_;
            }
        }
        if (ok) {
            delay = opts_.push_retry_ms;
            continue;
        }
        spdlog::warn("push of {} ({}) failed: {}; retrying in {} ms", item.event_id, item.type, error, delay);
        std::unique_lock lk(push_mutex_);
        push_cv_.wait_for(lk, std::chrono::milliseconds(delay), [this] { return push_stop_; });
        if (push_stop_) return;
        delay = std::min(delay * 2, opts_.push_retry_max_ms);
    }
}

}  // namespace sim
