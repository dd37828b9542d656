#pragma once
// HttpServer: a small Boost.Beast HTTP/1.1 server on its own thread for `run`'s local endpoints
// (/healthz, /metrics; and the HTTP push receiver). One request per connection read with a 5 s
// deadline (a slow or silent client cannot hold the server), bodies capped at body_limit (default
// 1 MiB, 413 beyond; headers 16 KiB, 431 beyond), every request answered by `handler` (called on
// the server thread; a HEAD answer is the header of the GET one, without the body). At most
// kMaxListenerConnections connections at once; out of descriptors it pauses (accept_loop.h).

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace dingbridge::agent::events {

struct HttpRequestView {
    std::string method, target, body;
};
struct HttpReply {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string allow;  // the Allow header of a 405
};

class HttpServer {
public:
    using Handler = std::function<HttpReply(const HttpRequestView&)>;
    // Binds now (throws std::runtime_error with the address on failure: startup only).
    // `setting` names the configuration key `listen` came from, for the error messages
    // ("events.push_listen: cannot listen on 127.0.0.1:8080: Address already in use").
    HttpServer(const std::string& setting, const std::string& listen, Handler handler,
               std::size_t body_limit = 1024 * 1024);
    ~HttpServer();
    void start();
    void stop();
    unsigned short port() const;

    struct Impl;  // public for the connection coroutines in http_server.cpp

private:
    std::unique_ptr<Impl> impl_;
    std::thread thread_;
};

}  // namespace dingbridge::agent::events
