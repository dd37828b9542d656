#include "agent/events/stream.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <random>
#include <utility>

#include "agent/events/event_parse.h"

namespace dingbridge::agent::events {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

struct Url {
    std::string scheme, host, port, target;
};

bool parse_url(const std::string& url, Url& out) {
    auto p = url.find("://");
    if (p == std::string::npos) return false;
    out.scheme = url.substr(0, p);
    std::string rest = url.substr(p + 3);
    auto slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    out.target = slash == std::string::npos ? "/" : rest.substr(slash);
    if (authority.empty() || authority.find('@') != std::string::npos) return false;
    if (authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string::npos) return false;
        out.host = authority.substr(1, close - 1);
        if (close + 1 < authority.size() && authority[close + 1] == ':') out.port = authority.substr(close + 2);
    } else {
        auto colon = authority.rfind(':');
        out.host = authority.substr(0, colon);
        if (colon != std::string::npos) out.port = authority.substr(colon + 1);
    }
    if (out.port.empty()) out.port = (out.scheme == "http" || out.scheme == "ws") ? "80" : "443";
    if (out.host.empty() || out.port.find_first_not_of("0123456789") != std::string::npos) return false;
    return true;
}

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out += static_cast<char>(c);
        else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string base64(const std::string& s) {
    std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
}

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    (void)net::ip::make_address(host, ec);
    return !ec;
}

}  // namespace

struct StreamClient::Impl {
    net::io_context io;
};

StreamClient::StreamClient(StreamSettings settings, OnEvent on_event)
    : settings_(std::move(settings)), on_event_(std::move(on_event)), impl_(std::make_unique<Impl>()) {}

StreamClient::~StreamClient() { stop(); }

void StreamClient::start() {
    thread_ = std::thread([this] { thread_main(); });
}

void StreamClient::stop() {
    stopping_ = true;
    cv_.notify_all();
    // The thread may be just about to restart the io_context: stop it until the thread is out.
    while (thread_.joinable() && !finished_) {
        impl_->io.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (thread_.joinable()) thread_.join();
}

bool StreamClient::sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stopping_.load(); });
    return !stopping_;
}

bool StreamClient::open(std::string& endpoint, std::string& ticket, std::string& error) {
    ++stats_.opens;
    dingtalk::HttpTransport transport(settings_.transport);
    dingtalk::HttpRequest req;
    req.method = "POST";
    req.url = settings_.api_base + "/v1.0/gateway/connections/open";
    req.body = "{\"clientId\":" + json_quote(settings_.app_key) +
               ",\"clientSecret\":" + json_quote(settings_.app_secret) +
               ",\"subscriptions\":[{\"type\":\"EVENT\",\"topic\":\"*\"}],\"ua\":\"dingbridge-agent/0.1\"}";
    bool done = false;
    dingtalk::HttpResponse resp;
    transport.submit(std::move(req), [&](dingtalk::HttpResponse&& r) {
        resp = std::move(r);
        done = true;
    });
    while (!done && !stopping_) transport.poll(std::chrono::milliseconds(200));
    if (!done) {
        error = "stopped";
        return false;
    }
    if (resp.curl_code != 0) {
        error = "connections/open: " + resp.curl_error +
                (resp.connect_status ? " (proxy answered " + std::to_string(resp.connect_status) + ")" : "");
        return false;
    }
    simdjson::dom::parser p;
    simdjson::dom::object o;
    if (p.parse(resp.body).get_object().get(o)) {
        error = "connections/open: HTTP " + std::to_string(resp.status) + " with a non-JSON body";
        return false;
    }
    if (resp.status != 200) {
        std::string_view code, message;
        auto e1 = o["code"].get_string().get(code);
        auto e2 = o["message"].get_string().get(message);
        (void)e1;
        (void)e2;
        error = "connections/open: HTTP " + std::to_string(resp.status) + " " + std::string(code) + " " +
                std::string(message);
        return false;
    }
    std::string_view ep, tk;
    if (o["endpoint"].get_string().get(ep) || o["ticket"].get_string().get(tk) || ep.empty() || tk.empty()) {
        error = "connections/open: the reply lacks endpoint or ticket";
        return false;
    }
    endpoint = std::string(ep);
    ticket = std::string(tk);
    return true;
}

namespace {

// One connection: tunnel, TLS, WebSocket, frames. Returns why it ended.
enum class SessionEnd { error, disconnect, stopped };

struct SessionArgs {
    const StreamSettings* settings;
    Url endpoint;
    std::string ticket;
    StreamStats* stats;
    StreamClient::OnEvent* on_event;
    std::atomic<bool>* stopping;
    SessionEnd* result;
    std::string* error;
    bool* was_connected;
};

// host:port, with an IPv6 host in brackets.
std::string authority_of(const Url& endpoint) {
    return endpoint.host.find(':') != std::string::npos ? "[" + endpoint.host + "]:" + endpoint.port
                                                        : endpoint.host + ":" + endpoint.port;
}

void load_ca(ssl::context& ctx, const StreamSettings& s, boost::system::error_code& ec) {
    ctx.set_verify_mode(ssl::verify_peer);
    if (!s.transport.ca_file.empty())
        ctx.load_verify_file(s.transport.ca_file, ec);
    else
        ctx.set_default_verify_paths(ec);
}

websocket::stream_base::timeout websocket_timeouts(const StreamSettings& s) {
    websocket::stream_base::timeout t{};
    t.handshake_timeout = s.transport.connect_timeout;
    t.idle_timeout = s.idle_timeout;
    t.keep_alive_pings = true;
    return t;
}

// The endpoint's target with the ticket added to its query.
std::string handshake_target(const Url& endpoint, const std::string& ticket) {
    std::string target = endpoint.target;
    target += (target.find('?') == std::string::npos ? "?" : "&");
    target += "ticket=" + url_encode(ticket);
    return target;
}

// The reply to one frame; nullopt for a frame that cannot be parsed (ignored). `disconnect` is set
// when DingTalk asked to reconnect.
std::optional<std::string> frame_reply(const std::string& text, SessionArgs& a, bool& disconnect) {
    std::string perr;
    auto f = parse_stream_frame(text, perr);
    if (!f) {
        ++a.stats->bad_frames;
        spdlog::warn("stream: ignored a bad frame: {}", perr);
        return std::nullopt;
    }
    std::string reply;
    if (f->type == "SYSTEM") {
        if (f->topic == "ping") {
            ++a.stats->pings;
            reply = stream_ack(f->message_id, 200, f->data);
        } else if (f->topic == "disconnect") {
            ++a.stats->disconnects;
            spdlog::info("stream: DingTalk asked to reconnect");
            reply = stream_ack(f->message_id, 200, "{}");
            disconnect = true;
        } else {
            reply = stream_ack(f->message_id, 200, "{}");
        }
    } else if (f->type == "EVENT") {
        JournalEvent e;
        e.source = "stream";
        e.event_type = f->event_type;
        e.born_ms = f->born_ms;
        if (!f->event_id.empty()) e.dedup_key = "event:" + f->event_id;
        std::string eerr;
        bool ok = parse_event_payload(f->data, e, eerr);
        if (e.dedup_key.empty()) e.dedup_key = "message:" + f->message_id;
        if (!ok) {
            // Not an event the agent can use: ACK it so DingTalk does not re-push it forever,
            // and say so (a reconcile repairs whatever it was about).
            ++a.stats->bad_frames;
            spdlog::warn("stream: event {} ignored: {}", f->message_id, eerr);
            reply = stream_ack(f->message_id, 200, "{\"status\":\"SUCCESS\",\"message\":\"ignored\"}");
        } else {
            ++a.stats->events;
            bool journaled = (*a.on_event)(std::move(e));
            if (journaled) {
                reply = stream_ack(f->message_id, 200, "{\"status\":\"SUCCESS\",\"message\":\"success\"}");
            } else {
                ++a.stats->later;
                reply = stream_later(f->message_id, "journal unavailable");
            }
        }
    } else {
        reply = stream_ack(f->message_id, 404, "{}");
    }
    return reply;
}

// Opens the tunnel to `authority` through the proxy tcp_s is connected to: "" once it is open, else
// what failed (`ec` then says why, when it was an I/O error).
net::awaitable<std::string> proxy_connect(beast::tcp_stream& tcp_s, const std::string& authority,
                                          const StreamSettings& s, boost::system::error_code& ec) {
    auto tok = net::redirect_error(net::use_awaitable, ec);
    http::request<http::empty_body> req{http::verb::connect, authority, 11};
    req.set(http::field::host, authority);
    req.set(http::field::user_agent, "dingbridge-agent/0.1");
    if (!s.transport.proxy_username.empty())
        req.set(http::field::proxy_authorization,
                "Basic " + base64(s.transport.proxy_username + ":" + s.transport.proxy_password));
    tcp_s.expires_after(s.transport.connect_timeout);
    co_await http::async_write(tcp_s, req, tok);
    if (ec) co_return std::string("CONNECT to the proxy failed");
    beast::flat_buffer buf;
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // a CONNECT reply has no body: the tunnel starts right after the head
    co_await http::async_read_header(tcp_s, buf, parser, tok);
    if (ec) co_return std::string("no answer from the proxy to CONNECT");
    if (parser.get().result_int() != 200) {
        ec = {};
        co_return std::string("the proxy refused CONNECT " + authority + " with " +
                              std::to_string(parser.get().result_int()) +
                              (parser.get().result_int() == 407 ? " (check proxy.username/password)"
                               : parser.get().result_int() == 403
                                   ? " (allow this host in the proxy's destinations for the agent's tenant)"
                                   : ""));
    }
    if (buf.size() != 0) co_return std::string("the proxy sent data before the TLS handshake");
    co_return std::string();
}

net::awaitable<void> session(SessionArgs a) {
    auto ex = co_await net::this_coro::executor;
    boost::system::error_code ec;
    auto tok = net::redirect_error(net::use_awaitable, ec);
    const auto& s = *a.settings;
    auto fail = [&](const std::string& what) {
        *a.result = SessionEnd::error;
        *a.error = what + (ec ? ": " + ec.message() : std::string());
    };
    Url proxy;
    const bool via_proxy = !s.transport.proxy_url.empty();
    if (via_proxy && (!parse_url(s.transport.proxy_url, proxy) || proxy.scheme != "http")) {
        fail("stream mode needs an http:// proxy.url (an https:// proxy is not supported for the WebSocket yet)");
        co_return;
    }
    const Url& first = via_proxy ? proxy : a.endpoint;
    beast::tcp_stream tcp_s(ex);
    tcp::resolver resolver(ex);
    auto eps = co_await resolver.async_resolve(first.host, first.port, tok);
    if (ec) co_return fail("cannot resolve " + first.host);
    tcp_s.expires_after(s.transport.connect_timeout);
    co_await tcp_s.async_connect(eps, tok);
    if (ec) co_return fail(via_proxy ? "cannot connect to the proxy" : "cannot connect to " + a.endpoint.host);
    const std::string authority = authority_of(a.endpoint);
    if (via_proxy) {
        std::string why = co_await proxy_connect(tcp_s, authority, s, ec);
        if (!why.empty()) co_return fail(why);
    }
    ssl::context ctx(ssl::context::tls_client);
    load_ca(ctx, s, ec);
    if (ec) co_return fail("cannot load the CA for DingTalk");
    websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(std::move(tcp_s), ctx);
    if (!is_ip_literal(a.endpoint.host))
        SSL_set_tlsext_host_name(ws.next_layer().native_handle(), a.endpoint.host.c_str());
    ws.next_layer().set_verify_callback(ssl::host_name_verification(a.endpoint.host));
    beast::get_lowest_layer(ws).expires_after(s.transport.connect_timeout);
    co_await ws.next_layer().async_handshake(ssl::stream_base::client, tok);
    if (ec) co_return fail("TLS handshake with " + a.endpoint.host + " failed (check dingtalk.ca_file)");
    beast::get_lowest_layer(ws).expires_never();
    ws.set_option(websocket_timeouts(s));
    ws.read_message_max(1 << 20);
    std::string host_header = a.endpoint.port == "443" ? a.endpoint.host : authority;
    co_await ws.async_handshake(host_header, handshake_target(a.endpoint, a.ticket), tok);
    if (ec) co_return fail("WebSocket handshake with " + a.endpoint.host + " failed");
    *a.was_connected = true;
    a.stats->connected = true;
    ++a.stats->connects;
    spdlog::info("stream: connected to {} through {}", a.endpoint.host,
                 via_proxy ? "the proxy" : "a direct connection");
    ws.text(true);
    beast::flat_buffer buf;
    for (;;) {
        buf.clear();
        co_await ws.async_read(buf, tok);
        if (ec) {
            a.stats->connected = false;
            if (*a.stopping) {
                *a.result = SessionEnd::stopped;
                co_return;
            }
            co_return fail("stream connection lost");
        }
        ++a.stats->frames;
        bool disconnect = false;
        auto reply = frame_reply(beast::buffers_to_string(buf.data()), a, disconnect);
        if (!reply) continue;
        co_await ws.async_write(net::buffer(*reply), tok);
        if (ec) {
            a.stats->connected = false;
            co_return fail("stream connection lost while acknowledging");
        }
        if (disconnect) {
            a.stats->connected = false;
            co_await ws.async_close(websocket::close_code::normal, tok);
            *a.result = SessionEnd::disconnect;
            co_return;
        }
    }
}

}  // namespace

void StreamClient::thread_main() {
    std::mt19937_64 rng(std::random_device{}());
    int failures = 0;
    while (!stopping_) {
        std::string endpoint, ticket, error;
        bool connected = false;
        SessionEnd end = SessionEnd::error;
        if (!open(endpoint, ticket, error)) {
            if (stopping_) break;
            ++stats_.open_failures;
        } else {
            Url url;
            if (!parse_url(endpoint, url) || (url.scheme != "wss" && url.scheme != "ws")) {
                error = "connections/open returned an unusable endpoint";
            } else if (url.scheme != "wss") {
                error = "connections/open returned a non-TLS endpoint; refusing it";
            } else {
                impl_->io.restart();
                SessionArgs args{&settings_, url, ticket, &stats_, &on_event_, &stopping_, &end, &error, &connected};
                net::co_spawn(impl_->io, session(args), net::detached);
                impl_->io.run();
                stats_.connected = false;
            }
        }
        if (stopping_) break;
        if (connected) ++stats_.reconnects;
        if (end == SessionEnd::disconnect) {
            failures = 0;
            continue;  // reconnect now with a fresh ticket
        }
        if (connected) failures = 0;
        ++failures;
        auto cap = settings_.backoff_max.count();
        auto base = std::min<std::int64_t>(cap, settings_.backoff_min.count() << std::min(failures - 1, 16));
        std::uniform_int_distribution<std::int64_t> jitter(base / 2, std::max<std::int64_t>(base / 2, base));
        auto wait = std::chrono::milliseconds(jitter(rng));
        spdlog::warn("stream: {}; reconnecting in {} ms", error, wait.count());
        if (!sleep_for(wait)) break;
    }
    stats_.connected = false;
    finished_ = true;
}

}  // namespace dingbridge::agent::events
