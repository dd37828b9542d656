#include "tests/sim/server.h"

#include <spdlog/spdlog.h>

namespace sim {

namespace {

constexpr size_t kBodyLimit = 4 * 1024 * 1024;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    HttpSession(tcp::socket s, ssl::context& tls, Simulator& sim, EventHub& hub)
        : stream_(std::move(s), tls), sim_(sim), hub_(hub), delay_(stream_.get_executor()) {
        beast::error_code ec;
        auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
        if (!ec) {
            auto a = ep.address();
            source_ = a.is_v6() && a.to_v6().is_v4_mapped() ? a.to_v6().to_v4().to_string() : a.to_string();
        }
    }

    void start() {
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
        stream_.async_handshake(ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return;  // scanners and aborted clients: nothing to answer
            self->read();
        });
    }

private:
    void read() {
        parser_.emplace();
        parser_->body_limit(kBodyLimit);
        parser_->header_limit(64 * 1024);
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(120));  // idle keep-alive
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec == http::error::end_of_stream) return shutdown();
        if (ec) {
            if (ec == http::error::body_limit) return reply_error(413, "request body too large");
            return;  // timeout, reset or garbage: drop the connection
        }
        auto req = parser_->release();
        std::string_view target(req.target().data(), req.target().size());
        if (websocket::is_upgrade(req)) return upgrade(std::move(req));

        ApiRequest r;
        r.method = std::string(req.method_string());
        r.target = std::string(target);
        r.body = std::move(req.body());
        r.source_ip = source_;
        r.host = std::string(req[http::field::host]);
        r.acs_token = std::string(req["x-acs-dingtalk-access-token"]);
        r.admin_token = std::string(req["x-sim-admin-token"]);
        r.authorization = std::string(req[http::field::authorization]);
        keep_alive_ = req.keep_alive();
        version_ = req.version();
        ApiResponse resp = sim_.handle(r);
        if (resp.drop) {
            // Dropped connection fault: no response, no TLS close_notify.
            beast::error_code ignored;
            beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
            beast::get_lowest_layer(stream_).socket().close(ignored);
            return;
        }
        if (resp.delay_ms > 0) {
            delay_.expires_after(std::chrono::milliseconds(resp.delay_ms));
            pending_ = std::move(resp);
            delay_.async_wait([self = shared_from_this()](beast::error_code ec) {
                if (!ec) self->write(std::move(self->pending_));
            });
            return;
        }
        write(std::move(resp));
    }

    void upgrade(http::request<http::string_body> req) {
        std::string_view target(req.target().data(), req.target().size());
        std::string_view path = target.substr(0, target.find('?'));
        std::string ticket;
        if (auto q = target.find('?'); q != std::string_view::npos) {
            std::string_view qs = target.substr(q + 1);
            while (!qs.empty()) {
                auto amp = qs.find('&');
                auto kv = qs.substr(0, amp);
                if (kv.rfind("ticket=", 0) == 0) ticket = std::string(kv.substr(7));
                qs = amp == std::string_view::npos ? std::string_view() : qs.substr(amp + 1);
            }
        }
        // Tickets are random alphanumerics; still decode %XX (peer input: never throw on it).
        auto hex = [](char c) {
            return c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        };
        std::string decoded;
        for (size_t i = 0; i < ticket.size(); ++i) {
            if (ticket[i] == '%' && i + 2 < ticket.size() && hex(ticket[i + 1]) >= 0 && hex(ticket[i + 2]) >= 0) {
                decoded.push_back(static_cast<char>(hex(ticket[i + 1]) * 16 + hex(ticket[i + 2])));
                i += 2;
            } else {
                decoded.push_back(ticket[i]);
            }
        }
        keep_alive_ = false;
        version_ = req.version();
        if (path != "/connect") return reply_error(404, "websocket endpoint is /connect");
        auto t = sim_.consume_ticket(decoded);
        if (!t) return reply_error(401, "ticket is unknown, used or expired");
        beast::get_lowest_layer(stream_).expires_never();
        hub_.accept_stream(std::move(stream_), std::move(req), std::move(*t));
    }

    void reply_error(int status, std::string_view message) {
        ApiResponse r;
        r.status = status;
        r.body = "{\"code\":\"SimError\",\"message\":\"" + std::string(message) + "\"}";
        keep_alive_ = false;
        write(std::move(r));
    }

    void write(ApiResponse resp) {
        res_ = {};
        res_.version(version_);
        res_.result(static_cast<unsigned>(resp.status));
        res_.set(http::field::server, "dingtalk-sim");
        res_.set(http::field::content_type, resp.content_type);
        for (auto& [k, v] : resp.headers) res_.set(k, v);
        res_.keep_alive(keep_alive_);
        res_.body() = std::move(resp.body);
        res_.prepare_payload();
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(60));
        http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return;
            if (!self->keep_alive_) return self->shutdown();
            self->read();
        });
    }

    void shutdown() {
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
        stream_.async_shutdown([self = shared_from_this()](beast::error_code) {});
    }

    TlsStream stream_;
    Simulator& sim_;
    EventHub& hub_;
    net::steady_timer delay_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    ApiResponse pending_;
    std::string source_;
    bool keep_alive_ = true;
    unsigned version_ = 11;
};

}  // namespace

HttpsServer::HttpsServer(net::io_context& io, ssl::context& tls, Simulator& sim, EventHub& hub)
    : io_(io), tls_(tls), sim_(sim), hub_(hub), acceptor_(io) {}

unsigned short HttpsServer::listen(const std::string& host, unsigned short port) {
    tcp::endpoint ep(net::ip::make_address(host), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
    do_accept();
    return acceptor_.local_endpoint().port();
}

void HttpsServer::close() {
    beast::error_code ec;
    acceptor_.close(ec);
}

void HttpsServer::do_accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket s) {
        if (ec == net::error::operation_aborted) return;
        if (ec) {
            // EMFILE and friends: back off instead of spinning (STYLE.md, pgbouncer).
            spdlog::warn("accept failed: {}", ec.message());
            auto t = std::make_shared<net::steady_timer>(io_, std::chrono::milliseconds(200));
            t->async_wait([this, t](beast::error_code) { do_accept(); });
            return;
        }
        s.set_option(tcp::no_delay(true));
        std::make_shared<HttpSession>(std::move(s), tls_, sim_, hub_)->start();
        do_accept();
    });
}

}  // namespace sim
