#pragma once
// Boost.Beast / Asio aliases shared by the server and the event hub. Only the I/O files include
// this (Beast headers are heavy to compile); the DingTalk logic in sim.* never does.

// clang-format off: must come first (include sorting would move it)
#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without including it
// clang-format on

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace sim {
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using WsStream = websocket::stream<TlsStream>;
}  // namespace sim
