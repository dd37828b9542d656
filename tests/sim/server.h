#pragma once
// HttpsServer: one TLS listener serving both DingTalk hosts' paths (oapi and api), the /_sim
// admin endpoints, and the stream-mode WebSocket upgrade (GET /connect?ticket=...). Each
// accepted connection is one HttpSession (Beast; keep-alive, one request at a time) that hands
// requests to Simulator::handle and applies the response's delay/drop faults. A WebSocket
// upgrade with a valid ticket moves the TLS stream to the EventHub. Loop thread only.

#include <memory>
#include <string>

#include "tests/sim/events.h"
#include "tests/sim/net.h"
#include "tests/sim/sim.h"

namespace sim {

class HttpsServer {
public:
    HttpsServer(net::io_context& io, ssl::context& tls, Simulator& sim, EventHub& hub);
    // Binds and starts accepting; returns the bound port (useful with port 0). Throws on failure
    // (startup only).
    unsigned short listen(const std::string& host, unsigned short port);
    void close();

private:
    void do_accept();

    net::io_context& io_;
    ssl::context& tls_;
    Simulator& sim_;
    EventHub& hub_;
    tcp::acceptor acceptor_;
};

}  // namespace sim
