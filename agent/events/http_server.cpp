#include "agent/events/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <set>
#include <utility>

#include "agent/events/accept_loop.h"
#include "shared/auth_throttle.h"
#include "shared/net.h"

namespace dingbridge::agent::events {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct HttpServer::Impl {
    // Connections per source (DingTalk pushes from a few addresses; a scraper needs one). Before
    // `io`: destroyed after it, since destroying `io` ends the connections still waiting (at
    // shutdown), and each one then gives its count back.
    SourceCounts sources{16};
    std::string listen;
    net::io_context io;
    tcp::acceptor acceptor{io};
    Handler handler;
    std::size_t body_limit = 1024 * 1024;
};

namespace {

// DingTalk answers a push as failed unless it is answered within 1.5 s (check_url included), and
// its request arrives whole at once: a connection gets 1 s for its request, so that idle ones
// holding every place (kMaxListenerConnections) delay a real push by a second at most, not five.
constexpr auto kRequestTime = std::chrono::seconds(1);
net::awaitable<void> serve(tcp::socket socket, HttpServer::Impl* impl) {
    boost::system::error_code ec;
    auto tok = net::redirect_error(net::use_awaitable, ec);
    const auto peer = peer_address(socket);
    if (!peer) co_return;  // already gone
    const IpAddress& source = *peer;
    const std::string key = AuthThrottle::source_key(source);
    if (impl->sources.full(key)) {
        if (impl->sources.newly_full(key))
            spdlog::warn("http server {}: {} has {} connections open; closing its next ones until one ends",
                         impl->listen, source_name(source), impl->sources.cap());
        co_return;  // closed unread
    }
    SourceCounts::Slot slot(impl->sources, key);
    HttpServer::Handler* handler = &impl->handler;
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buf;
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(impl->body_limit);
    stream.expires_after(kRequestTime);
    co_await http::async_read(stream, buf, parser, tok);
    http::response<http::string_body> res;
    if (ec) {
        if (ec == http::error::body_limit) {
            res.result(http::status::payload_too_large);
        } else if (ec == http::error::header_limit) {
            res.result(http::status::request_header_fields_too_large);
        } else if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::eof) {
            co_return;
        } else {
            res.result(http::status::bad_request);
        }
        res.body() = "bad request\n";
    } else {
        const auto& req = parser.get();
        HttpRequestView v{std::string(req.method_string()), std::string(req.target()), req.body()};
        HttpReply r;
        try {
            r = (*handler)(v);
        } catch (const std::exception& e) {  // a handler's bug must not end the server thread
            spdlog::error("http server: request failed: {}", e.what());
            r = HttpReply{500, "text/plain; charset=utf-8", "internal error\n", {}};
        }
        res.result(static_cast<unsigned>(r.status));
        res.set(http::field::content_type, r.content_type);
        if (!r.allow.empty()) res.set(http::field::allow, r.allow);
        res.body() = std::move(r.body);
    }
    res.version(11);
    res.keep_alive(false);
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(5));
    http::response_serializer<http::string_body> sr{res};
    if (!ec && parser.get().method() == http::verb::head)
        co_await http::async_write_header(stream, sr, tok);  // its Content-Length, no body
    else
        co_await http::async_write(stream, sr, tok);
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace

HttpServer::HttpServer(const std::string& setting, const std::string& listen, Handler handler, std::size_t body_limit)
    : impl_(std::make_unique<Impl>()) {
    impl_->handler = std::move(handler);
    impl_->body_limit = body_limit;
    impl_->listen = listen;
    listen_on(impl_->acceptor, setting, listen);
}

HttpServer::~HttpServer() { stop(); }

unsigned short HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::start() {
    Impl* impl = impl_.get();
    net::co_spawn(impl->io,
                  accept_loop(impl->acceptor, "http server " + impl->listen, kMaxListenerConnections,
                              [impl](tcp::socket s) { return serve(std::move(s), impl); }),
                  net::detached);
    thread_ = std::thread([this] { impl_->io.run(); });
}

void HttpServer::stop() {
    impl_->io.stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace dingbridge::agent::events
