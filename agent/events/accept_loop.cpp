#include "agent/events/accept_loop.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <memory>
#include <stdexcept>

#include "shared/log.h"
#include "shared/net.h"

namespace dingbridge::agent::events {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Connections being served, and the loop's wait for one of them to end (one io thread: no locks).
// Not in the anonymous namespace: the loop's coroutine frame holds one (-Wsubobject-linkage).
struct AcceptState {
    explicit AcceptState(const net::any_io_executor& ex) : freed(ex) {}
    std::size_t open = 0;
    net::steady_timer freed;  // waited on at the limit; cancelled when a connection ends
    void release() {
        --open;
        freed.cancel();
    }
};

std::optional<IpAddress> peer_address(const tcp::socket& socket) {
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (ec) return std::nullopt;
    // IPv4 peers on a dual-stack socket come as ::ffff:a.b.c.d; parse() stores both forms alike.
    // A link-local peer's zone (fe80::1%eth0) is not part of its address.
    const std::string text = peer.address().to_string();
    return IpAddress::parse(text.substr(0, text.find('%'))).value_or(IpAddress());
}

std::string source_name(const IpAddress& source) { return source.to_string() + (source.is_v4() ? "" : " (its /64)"); }

void listen_on(tcp::acceptor& acceptor, const std::string& setting, const std::string& listen) {
    auto hp = split_host_port(listen, true);
    if (!hp) throw std::runtime_error(setting + ": bad listen address " + listen + " (expected host:port)");
    boost::system::error_code ec;
    auto addr = net::ip::make_address(hp->host, ec);
    if (ec) throw std::runtime_error(setting + ": bad listen address " + listen + ": the host must be an IP address");
    tcp::endpoint ep(addr, hp->port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(setting + ": cannot listen on " + listen + ": " + ec.message());
}

net::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::string who, std::size_t max_connections,
                                 ServeConnection serve) {
    const auto ex = acceptor.get_executor();
    auto state = std::make_shared<AcceptState>(ex);
    net::steady_timer pause(ex);
    ThrottledWarning at_limit, short_of, failed;
    for (;;) {
        boost::system::error_code ec;
        auto tok = net::redirect_error(net::use_awaitable, ec);
        if (state->open >= max_connections) {
            at_limit.warn("{}: {} connections open, the most served at once; new ones wait", who, state->open);
            state->freed.expires_at(net::steady_timer::time_point::max());
            co_await state->freed.async_wait(tok);  // ends when release() cancels it
            if (!acceptor.is_open()) co_return;
            continue;
        }
        tcp::socket s = co_await acceptor.async_accept(tok);
        if (ec) {
            if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
            if (ec.category() == boost::system::system_category() && accept_out_of_resources(ec.value())) {
                short_of.warn("{}: accept failed: {}; pausing new connections for 100 ms", who, ec.message());
                pause.expires_after(std::chrono::milliseconds(100));
                co_await pause.async_wait(tok);
            } else {
                failed.warn("{}: accept failed: {}", who, ec.message());
            }
            continue;
        }
        ++state->open;
        // The completion handler runs however the connection's coroutine ends (an exception
        // included), so the count cannot leak; it is not called when the io_context is destroyed
        // first, and then nothing counts any more.
        net::co_spawn(ex, serve(std::move(s)), [state](std::exception_ptr) { state->release(); });
    }
}

}  // namespace dingbridge::agent::events
