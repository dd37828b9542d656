#include "agent/events/push.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <optional>
#include <string_view>

#include "agent/events/event_parse.h"
#include "shared/dingtalk_crypto.h"

namespace dingbridge::agent::events {

namespace crypto = dingbridge::dingtalk_crypto;

namespace {

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::string> url_decode(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
            if (h < 0 || l < 0) return std::nullopt;
            out.push_back(static_cast<char>(h * 16 + l));
            i += 2;
        } else if (in[i] == '+') {
            out.push_back(' ');
        } else {
            out.push_back(in[i]);
        }
    }
    return out;
}

// The first value of any of `names` in the query string (empty when absent or undecodable).
std::string query_param(std::string_view query, std::initializer_list<std::string_view> names) {
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        auto eq = part.find('=');
        if (eq == std::string_view::npos) continue;
        for (auto n : names)
            if (part.substr(0, eq) == n) {
                auto v = url_decode(part.substr(eq + 1));
                return v ? *v : std::string{};
            }
    }
    return {};
}

bool bounded_token(const std::string& s, std::size_t max) {
    if (s.empty() || s.size() > max) return false;
    for (unsigned char c : s)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

std::string sha256_hex(std::string_view s) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
    return crypto::hex_lower(md, sizeof md);
}

HttpReply json_reply(int status, std::string body) {
    return HttpReply{status, "application/json", std::move(body), {}};
}

}  // namespace

PushReceiver::PushReceiver(PushSettings settings, OnEvent on_event)
    : s_(std::move(settings)), on_event_(std::move(on_event)) {}

HttpReply PushReceiver::reject(int status, const std::string& why) {
    ++stats_.rejected;
    // `why` never holds the token, the key or the request's content: only what was wrong. A flood
    // of bad requests is logged at most kLogPerMinute times a minute (the metric counts them all).
    const std::int64_t minute = now_ms() / 60000;
    if (minute != log_minute_) {
        if (log_suppressed_ > 0) spdlog::warn("push: {} more refused requests were not logged", log_suppressed_);
        log_minute_ = minute;
        log_count_ = 0;
        log_suppressed_ = 0;
    }
    if (++log_count_ <= kLogPerMinute)
        spdlog::warn("push: refused a request ({}): {}", status, why);
    else
        ++log_suppressed_;
    return json_reply(status, "{\"error\":" + json_quote(why) + "}");
}

std::string PushReceiver::success_reply() const {
    const std::string ts = std::to_string(now_ms()), nonce = crypto::random_alnum(16);
    auto enc = crypto::encrypt(s_.aes_key, s_.owner_key, "success");
    if (!enc) return {};
    return "{\"msg_signature\":" + json_quote(crypto::signature(s_.token, ts, nonce, *enc)) +
           ",\"timeStamp\":" + json_quote(ts) + ",\"nonce\":" + json_quote(nonce) + ",\"encrypt\":" + json_quote(*enc) +
           "}";
}

HttpReply PushReceiver::handle(const HttpRequestView& req) {
    std::string_view target = req.target;
    auto q = target.find('?');
    std::string_view path = target.substr(0, q), query = q == std::string_view::npos ? "" : target.substr(q + 1);
    if (path != s_.path) return reject(404, "unknown path");
    if (req.method != "POST") {
        HttpReply r = reject(405, "POST only");
        r.allow = "POST";
        return r;
    }

    const std::string sig = query_param(query, {"msg_signature", "signature"});
    const std::string ts = query_param(query, {"timeStamp", "timestamp"});
    const std::string nonce = query_param(query, {"nonce"});
    if (sig.empty() || ts.empty() || nonce.empty())
        return reject(400, "unsigned request (msg_signature, timeStamp and nonce are required)");
    if (!bounded_token(sig, 64) || !bounded_token(nonce, 128) || ts.size() > 16)
        return reject(400, "malformed signature parameters");
    std::int64_t t = 0;
    auto [p, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
    if (ec != std::errc() || p != ts.data() + ts.size() || t <= 0) return reject(400, "malformed timestamp");
    // DingTalk sends milliseconds; the official samples also show seconds.
    const std::int64_t t_ms = t < 100000000000LL ? t * 1000 : t;
    const std::int64_t skew = now_ms() - t_ms;
    if (skew > s_.max_skew.count() * 1000 || -skew > s_.max_skew.count() * 1000)
        return reject(403, "stale timestamp (" + std::to_string(skew / 1000) + " s from now; events.push_max_skew is " +
                               std::to_string(s_.max_skew.count()) + " s)");

    // Body: {"encrypt":"<base64>"}.
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view encrypt;
    if (parser.parse(req.body.data(), req.body.size()).get(root) != simdjson::SUCCESS)
        return reject(400, "the body is not JSON");
    if (root["encrypt"].get_string().get(encrypt) != simdjson::SUCCESS || encrypt.empty())
        return reject(400, "the body has no \"encrypt\" string");

    const std::string expected = crypto::signature(s_.token, ts, nonce, encrypt);
    if (sig.size() != expected.size() || CRYPTO_memcmp(sig.data(), expected.data(), expected.size()) != 0)
        return reject(403, "bad signature");

    std::string derr;
    auto msg = crypto::decrypt(s_.aes_key, encrypt, s_.owner_key, derr);
    if (!msg) return reject(400, "cannot decrypt: " + derr);

    JournalEvent e;
    e.source = "push";
    std::string perr;
    bool ok = parse_event_payload(*msg, e, perr);
    std::string reply = success_reply();
    if (reply.empty()) return reject(500, "cannot encrypt the reply");
    if (e.event_type == "check_url") {
        spdlog::info("push: check_url answered");
        return json_reply(200, reply);
    }
    if (!ok) {
        // Signed by DingTalk but not an event the agent can use: answer success so that it is not
        // pushed forever (the scheduled reconcile repairs whatever it was about).
        spdlog::warn("push: event ignored: {}", perr);
        return json_reply(200, reply);
    }
    if (e.dedup_key.empty()) e.dedup_key = "push:" + sha256_hex(*msg);
    if (!on_event_(std::move(e))) {
        ++stats_.later;
        return json_reply(503, "{\"error\":\"journal unavailable; push again\"}");
    }
    ++stats_.events;  // journaled: what events_received_total counts
    return json_reply(200, reply);
}

}  // namespace dingbridge::agent::events
