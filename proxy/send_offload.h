#pragma once
// A worker's send thread, for plain tunnels' bulk bytes (copy relay).
//
// One relay thread receives and sends in turn: while send(2) copies the last megabyte into the
// receiver's socket (on loopback it also runs the receiver's TCP input), nothing receives the
// next one, and the sender waits. With a send thread the worker goes on receiving into fresh
// stages while this thread sends the earlier ones, so the two copies overlap on two cores
// (docs/BENCHMARKS.md). Only a direction that receives at least SocketRelay::kOffloadMin bytes
// at once, while no other direction of the process does, uses it (SocketRelay::alone_in_bulk);
// interactive traffic and several bulk transfers at once stay on the workers.
//
// A direction's bytes for the thread form a SendStream: pieces (stages) sent strictly in order.
// The thread only ever calls send(2) with MSG_DONTWAIT and never waits for a receiver: when a
// receiver is full the stream is `blocked` and goes back to the worker, which waits on its own
// loop for the socket to be writable and then `resume`s it. So one slow receiver cannot hold up
// another tunnel's sends. The thread reports each sent piece (and the end of each run) through an
// event on the worker's loop; the stream's `report` callback then collects.
//
// Ownership. Piece buffers belong to the stream until collected. A relay that stops orphans its
// stream: while the thread may be sending on the descriptor, its close is deferred until the
// thread let go of it, so the descriptor's number cannot be reused by another connection while
// the thread still uses it. Every method is called on the worker's thread; the stream's fields
// marked shared are guarded by the offload's mutex.

#include <event2/event.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "proxy/socket_relay.h"

namespace dingbridge::proxy {

struct SendStream {
    struct Piece {
        Stage stage;  // the bytes are stage.data[offset, offset + length)
        std::size_t offset = 0;
        std::size_t length = 0;
    };
    // Worker side, set once.
    int fd = -1;
    void (*report)(SendStream&) = nullptr;  // on the worker's thread: there is something to collect
    void* context = nullptr;                // null once orphaned (written under the lock then)
    // Worker side, the owner's bookkeeping.
    std::uint16_t pieces = 0;       // queued and not collected back
    std::uint16_t piece_limit = 1;  // how many the owner lets queue up
    std::size_t unsent = 0;         // bytes of those pieces not yet sent
    // Shared.
    std::deque<Piece> queue;     // not yet sent, in order (the front one maybe in part)
    std::vector<Stage> sent;     // sent in full, not yet collected
    std::size_t progressed = 0;  // bytes sent since the last collect
    bool scheduled = false;      // with the thread (waiting for it or being sent)
    bool reported = false;       // waiting for the worker's report callback
    bool blocked = false;        // the receiver is full: waits for resume()
    int error = 0;               // errno of a failed send
    bool close_fd = false;       // orphaned while scheduled: the offload closes fd
};

class SendOffload {
public:
    struct Collected {
        std::size_t progressed = 0;  // bytes the receiver accepted since the last collect
        std::size_t pieces_sent = 0;
        bool blocked = false;
        int error = 0;
    };

    // `sent_bytes` counts what the thread sent (a metric); `bulk_directions` is shared by all the
    // workers' relays (SocketRelay::set_bulk).
    SendOffload(event_base* base, StagePool& pool, std::atomic<std::uint64_t>& sent_bytes,
                std::atomic<std::size_t>& bulk_directions);

    std::atomic<std::size_t>& bulk_directions() { return bulk_directions_; }
    // Joins the thread, then finishes every stream still in its hands (closing the descriptors
    // whose close was deferred). Every stream must be orphaned by then (the worker's tunnels are
    // deleted first).
    ~SendOffload();
    SendOffload(const SendOffload&) = delete;
    SendOffload& operator=(const SendOffload&) = delete;

    // Queues `length` bytes of `stage` from `offset` behind the stream's earlier pieces. False
    // when the thread cannot be started: the stage stays the caller's, who sends itself.
    [[nodiscard]] bool push(SendStream& stream, Stage stage, std::size_t offset, std::size_t length);
    // The blocked stream's receiver has room again.
    void resume(SendStream& stream);
    // Moves the fully sent stages back to the pool and tells what happened since the last collect.
    Collected collect(SendStream& stream);
    // The owner stops. Returns true when the owner may close the descriptor now; false when the
    // thread may be using it (the offload closes it once the thread let go). Either way the
    // offload discards the stream's pieces and deletes it.
    bool orphan(SendStream* stream);

private:
    static void on_done(evutil_socket_t, short, void* arg);
    void run();
    // Under the lock: queues `stream` for the worker's report callback; true if the event must fire.
    bool report_locked(SendStream& stream);
    void finish(SendStream* stream);  // orphaned and out of the thread's hands

    StagePool& pool_;
    std::atomic<std::uint64_t>& sent_bytes_;
    std::atomic<std::size_t>& bulk_directions_;
    event* done_event_ = nullptr;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<SendStream*> pending_;  // scheduled, for the thread
    std::vector<SendStream*> done_;    // reported, for the worker
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace dingbridge::proxy
