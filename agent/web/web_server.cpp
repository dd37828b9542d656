#include "agent/web/web_server.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <set>
#include <stdexcept>

#include "agent/events/accept_loop.h"
#include "agent/web/login_throttle.h"
#include "shared/auth_throttle.h"
#include "shared/base64.h"
#include "shared/json_escape.h"
#include "shared/net.h"
#include "shared/password.h"
#include "shared/tls_server.h"

// GCC 12 at -O2 takes Asio's coroutine frame allocation (awaitable_frame_base's own operator new
// and delete, both through thread_info_base) for a mismatched pair once enough is inlined, as in
// the unity build; a known false positive (erigontech/silkworm#2046). This file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dingbridge::agent::web {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

const char* const kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// What authentication decided before any password is hashed. Not in the anonymous namespace:
// WebServer::Impl's coroutine frames hold one.
struct AuthStep {
    std::optional<std::string> user;  // logged in (open console, certificate, remembered)
    int throttled = 0;                // refused without hashing: 429, retry after this many s
    bool check = false;               // the password must be hashed against `hashes`
    bool trusted = false;             // from a source that logged in within the hour
    std::string name, password, digest;
    std::vector<PasswordHash> hashes;  // of the users called `name`; an unknown name: the decoy
};

namespace {

constexpr auto kRememberVerified = std::chrono::minutes(5);
constexpr std::size_t kMaxRemembered = 1000;
// Password checks (scrypt: about 0.1 s of a core and 32 MiB each) run on their own thread, never
// on the one that serves every console request; at most this many wait or run at once, the
// next ones get 503 at once.
constexpr int kMaxPendingChecks = 8;
// Checks beyond those for sources that logged in within the hour (LoginThrottle::trusted): others
// guessing from many addresses keep the 8 full, and must not lock the administrators out.
constexpr int kTrustedChecks = 2;
// Connections one source (an IPv4 address or an IPv6 /64) may hold open at once: a browser opens
// 6 per host; the listener serves 128 in all.
constexpr int kMaxConnectionsPerSource = 8;

std::string sha256(const std::string& text) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text.data(), text.size(), md, &n, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(md), n);
}

}  // namespace

// A connection whose request has not come yet, listed by its source (oldest first).
struct Waiter {
    beast::tcp_stream* stream = nullptr;
    bool listed = false;
    std::list<Waiter*>::iterator at;
};

struct WebServer::Impl {
    // Connections open per source (IPv4 address or IPv6 /64), on the io thread: one source holding
    // the listener's 128 slots with idle connections would hold up every other user's page.
    // Before `io`: destroyed after it, since destroying `io` ends the connections still waiting
    // (at shutdown), and each one then gives its count back.
    events::SourceCounts sources{kMaxConnectionsPerSource};
    // Those still waiting for their request: at the cap, a new connection closes the oldest of its
    // source's instead of being refused. On a loopback console every user comes from 127.0.0.1,
    // and idle connections held by any local process kept them all out.
    std::map<std::string, std::list<Waiter*>> waiting;
    void unlist(const std::string& key, Waiter& w) {
        if (!w.listed) return;
        w.listed = false;
        auto it = waiting.find(key);
        it->second.erase(w.at);
        if (it->second.empty()) waiting.erase(it);
    }
    net::io_context io;
    tcp::acceptor acceptor{io};
    std::optional<ssl::context> tls;
    Handler handler;
    std::vector<std::pair<std::string, PasswordHash>> users;
    // Checked for an unknown name: it costs what the costliest configured hash costs, so timing
    // doesn't tell which names exist (like the proxy's).
    std::optional<PasswordHash> decoy;
    bool certificates = false;
    std::map<std::string, std::pair<std::string, Clock::time_point>> remembered;  // digest -> user, expiry
    LoginThrottle throttle;
    // After `io`: destroyed (joined) first, while the requests waiting for it still exist.
    net::thread_pool checks{1};
    int pending_checks = 0;  // on the io thread
    std::string listen;      // web.listen, for the warnings

    bool open() const { return users.empty() && !certificates; }
    // On the io thread: everything but the hashing, which the caller does when step.check is set
    // and then hands to finish_check().
    AuthStep begin_auth(std::string_view authorization, const std::optional<std::string>& subject,
                        const IpAddress& source);
    std::optional<std::string> finish_check(const AuthStep& step, bool verified, const IpAddress& source);
    net::awaitable<WebReply> answer(const http::request<http::string_body>& req,
                                    const std::optional<std::string>& subject, const IpAddress& source);
};

AuthStep WebServer::Impl::begin_auth(std::string_view authorization, const std::optional<std::string>& subject,
                                     const IpAddress& source) {
    AuthStep step;
    if (open()) {
        step.user = std::string();
        return step;
    }
    if (certificates && subject) {
        step.user = *subject;
        return step;
    }
    constexpr std::string_view scheme = "Basic ";
    if (users.empty() || authorization.size() <= scheme.size() || authorization.size() > 1024 ||
        !beast::iequals(std::string(authorization.substr(0, scheme.size())), std::string(scheme)))
        return step;
    step.digest = sha256(std::string(authorization));
    if (auto it = remembered.find(step.digest); it != remembered.end()) {
        if (Clock::now() < it->second.second) {
            step.user = it->second.first;
            return step;
        }
        remembered.erase(it);
    }
    const auto now = Clock::now();
    auto decoded = base64_decode(authorization.substr(scheme.size()));
    const std::size_t colon = decoded ? decoded->find(':') : std::string::npos;
    std::optional<std::string> name;
    if (colon != std::string::npos) name = decoded->substr(0, colon);
    if (const int wait = throttle.wait(source, name ? &*name : nullptr, now)) {
        step.throttled = wait;
        return step;
    }
    if (!name) {
        throttle.refused(source, nullptr, now);
        return step;
    }
    step.check = true;
    step.trusted = throttle.trusted(source, now);
    step.name = std::move(*name);
    step.password = decoded->substr(colon + 1);
    for (const auto& [user, hash] : users)
        if (user == step.name) step.hashes.push_back(hash);
    if (step.hashes.empty() && decoy) step.hashes.push_back(*decoy);
    return step;
}

std::optional<std::string> WebServer::Impl::finish_check(const AuthStep& step, bool verified, const IpAddress& source) {
    const auto now = Clock::now();
    if (verified) {
        if (remembered.size() >= kMaxRemembered) remembered.clear();
        remembered[step.digest] = {step.name, now + kRememberVerified};
        throttle.verified(source, now);
        return step.name;
    }
    // Quoted and escaped: the name is the client's, and a raw CR/LF in it would forge log lines
    // (a fake "refused ... from ADDRESS" line can steer fail2ban-style tools at someone else).
    spdlog::warn("web: refused credentials for user \"{}\" from {}",
                 json_escape(step.name.size() > 64 ? step.name.substr(0, 64) : step.name), source.to_string());
    throttle.refused(source, &step.name, now);
    return std::nullopt;
}

namespace {

// On the check thread: true when one of `hashes` matches (an unknown name's is the decoy).
bool check_password(const std::vector<PasswordHash>& hashes, const std::string& password) {
    for (const auto& h : hashes)
        if (h.verify(password)) return true;
    return false;
}

// The check as a coroutine of its own, its arguments by value, spawned on the check thread. (A
// lambda coroutine with init-captures corrupted the heap here when built with GCC 12.)
net::awaitable<bool> check_on_pool(std::vector<PasswordHash> hashes, std::string password) {
    co_return check_password(hashes, password);
}

}  // namespace

namespace {

// Whether a Host header names this machine by a form no one else's DNS can answer for: an IP
// address literal, or localhost. (Empty: not a browser, which always sends one.)
bool local_host_header(std::string_view host) {
    if (host.empty()) return true;
    std::string_view name = host;
    if (name.front() == '[') {
        const std::size_t close = name.find(']');
        if (close == std::string_view::npos) return false;
        name = name.substr(1, close - 1);
    } else if (const std::size_t colon = name.rfind(':'); colon != std::string_view::npos) {
        name = name.substr(0, colon);
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    return beast::iequals(beast::string_view(name.data(), name.size()), "localhost") ||
           IpAddress::parse(std::string(name)).has_value();
}

}  // namespace

net::awaitable<WebReply> WebServer::Impl::answer(const http::request<http::string_body>& req,
                                                 const std::optional<std::string>& subject, const IpAddress& source) {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        WebReply r{405, "text/plain; charset=utf-8", "read-only console: GET and HEAD only\n", {}};
        r.headers.emplace_back("Allow", "GET, HEAD");
        co_return r;
    }
    const std::string target(req.target());
    if (target.empty() || target[0] != '/') co_return WebReply{400, "text/plain; charset=utf-8", "bad request\n", {}};
    // DNS rebinding: a page the operator opens on attacker.example can point that name at
    // 127.0.0.1 and read a console without login as its own origin. Such a request carries the
    // attacker's name as Host; a console without login answers only to an address or localhost.
    if (open() && !local_host_header(std::string_view(req[http::field::host].data(), req[http::field::host].size())))
        co_return WebReply{421,
                           "text/plain; charset=utf-8",
                           "this console has no login and answers only to its address or localhost (Host)\n",
                           {}};
    const auto authz = req[http::field::authorization];
    AuthStep step = begin_auth(std::string_view(authz.data(), authz.size()), subject, source);
    if (step.check) {
        if (pending_checks >= kMaxPendingChecks + (step.trusted ? kTrustedChecks : 0)) {
            // Not a refusal: nothing was checked. Other requests (remembered credentials,
            // certificates) are still served meanwhile.
            WebReply r{503, "text/plain; charset=utf-8", "busy checking other logins; try again in 1 s\n", {}};
            r.headers.emplace_back("Retry-After", "1");
            co_return r;
        }
        bool ok = false;
        ++pending_checks;  // until the check ends, also when it throws
        try {
            ok = co_await net::co_spawn(checks, check_on_pool(step.hashes, step.password), net::use_awaitable);
        } catch (...) {
            --pending_checks;
            throw;
        }
        --pending_checks;
        step.user = finish_check(step, ok, source);
    }
    const std::optional<std::string>& user = step.user;
    if (!user && step.throttled) {
        WebReply r{429,
                   "text/plain; charset=utf-8",
                   "too many refused logins; try again in " + std::to_string(step.throttled) + " s\n",
                   {}};
        r.headers.emplace_back("Retry-After", std::to_string(step.throttled));
        co_return r;
    }
    if (!user) {
        WebReply r{401,
                   "text/html; charset=utf-8",
                   "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>401</title></head><body>"
                   "<h1>Login required / 需要登录</h1><p>dingbridge-agent console: credentials are required."
                   "</p><p>钉钉同步控制台：请提供用户名和密码。</p></body></html>\n",
                   {}};
        r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"dingbridge-agent\", charset=\"UTF-8\"");
        co_return r;
    }
    WebRequest w;
    w.method = std::string(req.method_string());
    const std::size_t q = target.find('?');
    w.path = target.substr(0, q);
    w.query = q == std::string::npos ? "" : target.substr(q + 1);
    w.accept_language = std::string(req[http::field::accept_language]);
    w.user = *user;
    try {
        co_return handler(w);
    } catch (const std::exception& e) {  // a page's bug must not end the server thread
        spdlog::error("web: {} failed: {}", w.path, e.what());
    }
    co_return WebReply{500, "text/plain; charset=utf-8", "internal error\n", {}};
}

namespace {

// A client has this long to send its request (TLS handshake included), and the answer as long.
constexpr std::chrono::seconds kRequestTime{10};

template <class Stream>
net::awaitable<void> exchange(Stream& stream, WebServer::Impl& impl, const std::optional<std::string>& subject,
                              const IpAddress& source, std::chrono::steady_clock::time_point request_deadline,
                              const std::function<void()>& request_read) {
    boost::system::error_code ec;
    auto tok = net::redirect_error(net::use_awaitable, ec);
    beast::flat_buffer buf;
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(8 * 1024);
    beast::get_lowest_layer(stream).expires_at(request_deadline);
    co_await http::async_read(stream, buf, parser, tok);
    request_read();
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::eof) co_return;
    WebReply r{400, "text/plain; charset=utf-8", "bad request\n", {}};
    if (ec == http::error::body_limit) r = {413, "text/plain; charset=utf-8", "request body too large\n", {}};
    if (ec == http::error::header_limit) r = {431, "text/plain; charset=utf-8", "request header too large\n", {}};
    if (!ec) r = co_await impl.answer(parser.get(), subject, source);  // not in a ?: (GCC 12 coroutine bug)
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    res.set(http::field::content_type, r.content_type);
    res.set("Content-Security-Policy", kContentSecurityPolicy);
    res.set("X-Content-Type-Options", "nosniff");
    res.set("X-Frame-Options", "DENY");
    res.set("Referrer-Policy", "no-referrer");
    res.set(http::field::cache_control, "no-store");
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.body() = std::move(r.body);
    res.keep_alive(false);
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(kRequestTime);
    http::response_serializer<http::string_body> sr{res};
    if (!ec && parser.get().method() == http::verb::head)
        co_await http::async_write_header(stream, sr, tok);
    else
        co_await http::async_write(stream, sr, tok);
}

net::awaitable<void> serve(tcp::socket socket, WebServer::Impl* impl) {
    boost::system::error_code ec;
    auto tok = net::redirect_error(net::use_awaitable, ec);
    const auto peer = events::peer_address(socket);
    if (!peer) co_return;  // already gone
    const IpAddress& source = *peer;
    const std::string key = AuthThrottle::source_key(source);
    if (impl->sources.full(key)) {
        const auto w = impl->waiting.find(key);
        if (w == impl->waiting.end()) {
            if (impl->sources.newly_full(key))
                spdlog::warn(
                    "web: {} has {} connections open, each with a request; closing its next ones until one ends",
                    events::source_name(source), kMaxConnectionsPerSource);
            co_return;  // closed unread
        }
        if (impl->sources.newly_full(key))
            spdlog::warn("web: {} has {} connections open; each new one closes its oldest without a request",
                         events::source_name(source), kMaxConnectionsPerSource);
        Waiter* oldest = w->second.front();
        impl->unlist(key, *oldest);
        oldest->stream->socket().close(ec);  // its read ends (aborted), and it gives its count back
    }
    events::SourceCounts::Slot slot(impl->sources, key);
    // The request, TLS handshake included, must have come within kRequestTime of the accept.
    const auto deadline = std::chrono::steady_clock::now() + kRequestTime;
    Waiter waiter;
    struct Unlist {
        WebServer::Impl* impl;
        const std::string& key;
        Waiter& w;
        ~Unlist() { impl->unlist(key, w); }
    };
    auto list = [&](beast::tcp_stream& s) {
        auto& mine = impl->waiting[key];
        waiter.stream = &s;
        waiter.at = mine.insert(mine.end(), &waiter);
        waiter.listed = true;
    };
    const std::function<void()> request_read = [&] { impl->unlist(key, waiter); };
    if (!impl->tls) {
        beast::tcp_stream stream(std::move(socket));
        list(stream);
        Unlist unlist{impl, key, waiter};
        co_await exchange(stream, *impl, std::nullopt, source, deadline, request_read);
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *impl->tls);
    list(beast::get_lowest_layer(stream));
    Unlist unlist{impl, key, waiter};
    beast::get_lowest_layer(stream).expires_at(deadline);
    co_await stream.async_handshake(ssl::stream_base::server, tok);
    if (ec) co_return;  // no certificate when one is required, or not TLS at all
    co_await exchange(stream, *impl, verified_peer_subject(stream.native_handle()), source, deadline, request_read);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(tok);
}

}  // namespace

WebServer::WebServer(const AgentConfig::Web& config, Handler handler) : impl_(std::make_unique<Impl>()) {
    impl_->handler = std::move(handler);
    for (const auto& u : config.users) {
        std::string error;
        auto h = PasswordHash::parse(u.password_hash, &error);
        if (!h) throw std::runtime_error("web.users " + u.name + ": " + error);
        impl_->users.emplace_back(u.name, *h);
    }
    for (const auto& [name, hash] : impl_->users)
        if (!impl_->decoy || hash.params().cost() > impl_->decoy->params().cost())
            impl_->decoy = PasswordHash::decoy(hash.params());
    if (!config.tls_certificate.empty()) {
        TlsSettings ts{config.tls_certificate, config.tls_key, config.client_ca, config.users.empty()};
        auto ctx = make_server_context(ts);
        SSL_CTX_up_ref(ctx.get());  // asio's context takes its own reference
        impl_->tls.emplace(ctx.get());
        impl_->certificates = !config.client_ca.empty();
    }
    impl_->listen = config.listen;
    events::listen_on(impl_->acceptor, "web.listen", config.listen);
}

WebServer::~WebServer() { stop(); }

unsigned short WebServer::port() const { return impl_->acceptor.local_endpoint().port(); }
bool WebServer::tls() const { return impl_->tls.has_value(); }

void WebServer::start() {
    Impl* impl = impl_.get();
    net::co_spawn(impl->io,
                  events::accept_loop(impl->acceptor, "web console " + impl->listen, events::kMaxListenerConnections,
                                      [impl](tcp::socket s) { return serve(std::move(s), impl); }),
                  net::detached);
    thread_ = std::thread([this] { impl_->io.run(); });
}

void WebServer::stop() {
    impl_->io.stop();
    if (thread_.joinable()) thread_.join();
    impl_->checks.stop();  // a check already running finishes; its answer is not sent
    impl_->checks.join();
}

}  // namespace dingbridge::agent::web

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
