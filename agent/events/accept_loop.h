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

#include <spdlog/spdlog.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>

namespace dingbridge::agent::events {

// Enough for DingTalk's pushes, a Prometheus scraper and a few console users; with three
// listeners 384 descriptors at most, well under the usual soft limit of 1,024.
constexpr std::size_t kMaxListenerConnections = 128;

// A warning at most once per `every`, then with the count of those left out.
class ThrottledWarning {
public:
    explicit ThrottledWarning(std::chrono::steady_clock::duration every = std::chrono::minutes(1)) : every_(every) {}
    template <class... Args>
    void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
        const auto now = std::chrono::steady_clock::now();
        if (logged_ && now - last_ < every_) {
            ++left_out_;
            return;
        }
        std::string text = fmt::format(fmt, std::forward<Args>(args)...);
        if (left_out_ > 0) text += fmt::format(" ({} more like this since the last one)", left_out_);
        spdlog::warn("{}", text);
        logged_ = true;
        last_ = now;
        left_out_ = 0;
    }

private:
    std::chrono::steady_clock::duration every_;
    std::chrono::steady_clock::time_point last_{};
    bool logged_ = false;
    std::size_t left_out_ = 0;
};

// Accepts on `acceptor` until it is closed (or its io_context stops), running serve(socket) for
// each connection: `serve` returns the connection's awaitable (not a coroutine lambda itself: GCC 12
// miscompiled those here). `who` prefixes the warnings ("web console 0.0.0.0:8080").
using ServeConnection = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket)>;
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor, std::string who,
                                         std::size_t max_connections, ServeConnection serve);

}  // namespace dingbridge::agent::events
