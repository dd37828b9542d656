#pragma once
// Zero-copy relay of a plain tunnel: bytes move socket → pipe → socket with splice(2), so they
// never enter user space. Each direction borrows a pipe from the worker's PipePool only while it
// has bytes in flight and returns it once the pipe is empty, so an idle tunnel holds no pipe
// (no extra descriptors, no kernel pipe buffers). A direction whose receiver is slow stops
// reading its sender until the pipe drains (backpressure bounded by the pipe size).
//
// Owned by one Tunnel, on its worker's thread. `stop()` detaches all events and closes the
// sockets; it is what the owner calls when it closes, and the object is deleted later with the
// owner (never inside one of its own callbacks).

#include <event2/event.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "proxy/close_reason.h"
#include "proxy/relay.h"

namespace dingbridge::proxy {

struct Pipe {
    int read_fd = -1;
    int write_fd = -1;
    std::size_t capacity = 64 * 1024;
};

// Per-worker cache of empty pipes. Not thread-safe (one per worker).
class PipePool {
public:
    explicit PipePool(std::size_t keep = 64) : keep_(keep) {}
    ~PipePool();
    PipePool(const PipePool&) = delete;
    PipePool& operator=(const PipePool&) = delete;

    void set_keep(std::size_t keep) { keep_ = keep; }
    std::optional<Pipe> take();
    void give(Pipe pipe);  // only empty pipes; kept up to `keep`, closed beyond

private:
    std::size_t keep_;
    std::vector<Pipe> free_;
};

class SpliceRelay final : public Relay {
public:
    using Listener = Relay::Listener;

    // Takes ownership of both sockets.
    SpliceRelay(event_base* base, PipePool& pool, int client_fd, int upstream_fd, Listener& listener);
    ~SpliceRelay() override;
    SpliceRelay(const SpliceRelay&) = delete;
    SpliceRelay& operator=(const SpliceRelay&) = delete;

    bool start();  // false when events could not be created
    void stop() override;
    std::size_t queued() const override;

private:
    struct Direction {
        SpliceRelay* owner = nullptr;
        bool upstream_bound = false;
        int from = -1;
        int to = -1;
        event* readable = nullptr;  // on `from`
        event* writable = nullptr;  // on `to`
        std::optional<Pipe> pipe;
        std::size_t in_pipe = 0;
        bool eof = false;
        bool shut = false;
    };

    static void on_readable(evutil_socket_t, short, void* arg);
    static void on_writable(evutil_socket_t, short, void* arg);
    // Moves what it can; returns false when the relay ended (listener already told).
    bool pump(Direction& d);
    bool flush(Direction& d);
    void finish_direction(Direction& d);
    void fail(CloseReason reason);

    event_base* base_;
    PipePool& pool_;
    Listener& listener_;
    int client_fd_;
    int upstream_fd_;
    Direction up_;    // client → upstream
    Direction down_;  // upstream → client
    bool stopped_ = false;
};

}  // namespace dingbridge::proxy
