#pragma once
// The accept loop of the agent's HTTP listeners: the HTTP push receiver, /healthz + /metrics
// (HttpServer) and the web console (web::WebServer). The push receiver faces DingTalk, so the
// internet; no client may take the process's descriptors or a core:
//  - at most `max_connections` connections are served at once; at the limit the loop accepts no
//    more until one ends (the kernel's backlog holds the next ones), so the DingTalk client, the
//    event journal and the target keep descriptors to work with;
//  - out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) it waits 100 ms before
//    the next accept instead of retrying at once (the failed connection stays in the backlog, so
//    an immediate retry fails again: a busy loop writing one warning per turn);
//  - each kind of warning is logged at most once a minute, with how many were left out.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <string>

namespace dingbridge::agent::events {

// Enough for DingTalk's pushes, a Prometheus scraper and a few console users; with three
// listeners 384 descriptors at most, well under the usual soft limit of 1,024.
constexpr std::size_t kMaxListenerConnections = 128;

// Opens, binds and listens `acceptor` on `listen` ("IP:port", "[v6]:port"); errors name the
// setting it came from ("web.listen: cannot listen on 127.0.0.1:8080: Address already in use").
void listen_on(boost::asio::ip::tcp::acceptor& acceptor, const std::string& setting, const std::string& listen);

// Accepts on `acceptor` until it is closed (or its io_context stops), running serve(socket) for
// each connection: `serve` returns the connection's awaitable (not a coroutine lambda itself: GCC 12
// miscompiled those here). `who` prefixes the warnings ("web console 0.0.0.0:8080").
using ServeConnection = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket)>;
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor, std::string who,
                                         std::size_t max_connections, ServeConnection serve);

}  // namespace dingbridge::agent::events
