#pragma once
// The relay of a plain tunnel once it is established: bytes move between the two sockets
// through one stage per direction (StageKind), either
//   - a user-space buffer filled by recv(2) and emptied by send(2) (relay: copy), or
//   - a pipe, socket → pipe → socket with splice(2), so the bytes never enter user space
//     (relay: splice), or
//   - a buffer for small bursts and a pipe for bulk bytes while the worker has one to lend
//     (relay: auto, the default).
// A pipe costs the proxy less than half the CPU per byte of a buffer and holds no user memory,
// but a busy direction then holds 2 more descriptors; auto bounds those per worker (StagePool's
// pipe allowance, set aside by the descriptor budget) and copies beyond it, so it needs no more
// descriptors per tunnel than copy. While the allowance is short, a pipe whose receiver took
// nothing for a whole tick() interval goes back to the pool (its bytes into a buffer, within a
// bound), so stalled tunnels cannot keep it from transfers that move. On loopback auto moved as
// much as copy or splice through one tunnel and more through four (docs/BENCHMARKS.md).
//
// Each direction borrows its stage from the worker's StagePool only while it has bytes in flight
// and returns it once empty, so an idle tunnel holds no buffer, no pipe and no extra descriptor.
// A direction whose receiver is slow stops reading its sender until the stage drains
// (backpressure bounded by the stage's size).
//
// Bulk directions of the copy relay (a receive of kOffloadMin bytes or more) hand their stages to
// the worker's send thread (send_offload.h) and receive into fresh ones meanwhile; the bytes still
// go out in order, and the backpressure bound becomes kMaxPieces large stages (the large ones
// are few per worker; on small stages it stays one).
//
// Fair turns: a worker runs its tunnels' ready directions in turn. While more than
// kBulkAloneMax directions of the worker move bulk bytes and read their senders (one waiting
// for its receiver or the send thread is not counted, so stalled downloads cannot keep the
// worker on short turns), every direction moves at most kFairRound bytes per turn (one
// receive), so a tunnel that moves a few bytes waits for a short pass over them rather than for
// up to kPumpRounds large stages of each (one tenant's 32 downloads held another tenant's echo
// for 150 ms a round trip).
//
// Owned by one Tunnel, on its worker's thread. `stop()` detaches all events and closes the
// sockets; it is what the owner calls when it closes, and the object is deleted later with the
// owner (never inside one of its own callbacks).

#include <event2/event.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/close_reason.h"
#include "proxy/relay.h"

namespace dingbridge::proxy {

// One direction's bytes in flight: the two ends of a pipe (splice), or a buffer (copy). Kept
// small: every established tunnel carries two, held or not.
struct Stage {
    char* data = nullptr;  // buffer
    int read_fd = -1;      // pipe
    int write_fd = -1;
    std::uint32_t capacity = 0;  // 0: no stage held
    std::uint32_t sent = 0;      // buffer: bytes at the front already sent
    bool held() const { return capacity != 0; }
    bool is_pipe() const { return data == nullptr; }
};

// Per-worker cache of empty stages. Not thread-safe (one per worker).
//   pipes: enlarged to kPipeSize where the kernel allows; up to `keep_pipes` spare ones are kept.
//   buffers: kLargeBuffer bytes while fewer than kLargeBuffersInUse of them are lent out, so a few
//   fast tunnels move a megabyte per system call; beyond that (many receivers backed up at once)
//   kSmallBuffer, so the memory held by stalled tunnels stays bounded by what they are owed.
//   Up to kKeepBuffers large ones are kept for reuse.
class StagePool {
public:
    static constexpr std::size_t kPipeSize = 256 * 1024;
    static constexpr std::size_t kLargeBuffer = 1024 * 1024;
    static constexpr std::size_t kSmallBuffer = 64 * 1024;
    static constexpr std::size_t kLargeBuffersInUse = 16;
    static constexpr std::size_t kKeepBuffers = 4;

    explicit StagePool(std::size_t keep_pipes = 64) : keep_pipes_(keep_pipes) {}
    ~StagePool();
    StagePool(const StagePool&) = delete;
    StagePool& operator=(const StagePool&) = delete;

    // Spare pipes kept for reuse; lowering it (a reload to another relay) closes the surplus.
    void set_keep_pipes(std::size_t keep);
    // The auto relay's pipe allowance: lend_pipe() gives none while this many pipes are lent out
    // (those of relay: splice included, which take() lends whatever the allowance).
    void set_max_pipes_lent(std::size_t max) { max_pipes_lent_ = max; }
    Stage take(bool pipe);                    // not held(): no descriptors or memory left
    Stage lend_pipe();                        // a pipe within the allowance, else none (the auto relay then copies)
    Stage take_buffer(std::size_t capacity);  // exactly this size (small: from the allocator)
    // A stalled direction may move `bytes` out of its pipe into a buffer (SocketRelay::tick) only
    // while another bulk direction of the worker was refused a pipe lately (within 30 s, two tick
    // intervals at most), and within kReleasedMax for all such buffers of the worker, so
    // releasing holds no more memory than the allowance's pipes could.
    static constexpr std::size_t kReleasedMax = 8 * 1024 * 1024;
    bool may_release(std::size_t bytes) const;
    void count_released(std::size_t bytes, bool more) { released_ = more ? released_ + bytes : released_ - bytes; }
    std::size_t released_bytes() const { return released_; }
    void give(Stage stage);     // only empty stages
    void discard(Stage stage);  // a stage with bytes still in it: never reused

    std::size_t large_buffers_in_use() const { return large_in_use_; }
    std::size_t pipes_lent() const { return pipes_lent_; }
    // Directions of this worker's relays that move bulk bytes and read their senders (fair
    // turns, SocketRelay::set_bulk and set_reading).
    std::size_t& bulk_readers() { return bulk_readers_; }
    // Where short turns are counted (the process's metric), if anywhere.
    void count_short_turns_in(std::atomic<std::uint64_t>* counter) { short_turns_ = counter; }
    void short_turn_taken() {
        if (short_turns_ != nullptr) short_turns_->fetch_add(1, std::memory_order_relaxed);
    }
    // Where bytes received into pipes are counted (the process's metric), if anywhere.
    void count_spliced_bytes_in(std::atomic<std::uint64_t>* counter) { spliced_bytes_ = counter; }
    void spliced(std::size_t bytes) {
        if (spliced_bytes_ != nullptr) spliced_bytes_->fetch_add(bytes, std::memory_order_relaxed);
    }

private:
    std::size_t keep_pipes_;
    std::vector<Stage> free_pipes_;
    std::vector<Stage> free_buffers_;  // large ones only
    std::size_t large_in_use_ = 0;
    std::size_t max_pipes_lent_ = 32;
    std::size_t pipes_lent_ = 0;
    std::size_t released_ = 0;
    std::chrono::steady_clock::time_point last_refusal_{};
    bool refused_ = false;  // last_refusal_ is set
    std::size_t bulk_readers_ = 0;
    std::atomic<std::uint64_t>* short_turns_ = nullptr;
    std::atomic<std::uint64_t>* spliced_bytes_ = nullptr;
};

class SendOffload;
struct SendStream;

// What a relay's directions move their bytes through: always a buffer (copy), always a pipe
// (splice), or a buffer until the direction moves bulk bytes and a pipe from then on while the
// worker has one to lend (auto; a buffer again when it has none).
enum class StageKind { buffer, pipe, pipe_when_bulk };

class SocketRelay final : public Relay {
public:
    using Listener = Relay::Listener;

    // A direction that has this much to send at once hands the send to the send thread, while it
    // is the process's only bulk transfer (alone_in_bulk: with several, the cores are busy already
    // and the thread only adds switches; docs/BENCHMARKS.md). When another one starts, it lets the
    // thread finish what it has and sends on itself...
    static constexpr std::size_t kOffloadMin = 64 * 1024;
    // ...and reads on while fewer than this many of its stages wait there (large stages only: a
    // direction on small ones, when many tunnels are backed up, keeps one, as without the thread).
    static constexpr std::uint16_t kMaxPieces = 4;
    // Fair turns (above): with more bulk directions reading than this on the worker, each turn
    // is a single receive of at most kFairRound bytes.
    static constexpr std::size_t kBulkAloneMax = 4;
    static constexpr std::size_t kFairRound = 128 * 1024;

    // Takes ownership of both sockets. `offload`: the worker's send thread for bulk bytes (used
    // with StageKind::buffer only), or null to send on this thread.
    SocketRelay(event_base* base, StagePool& pool, StageKind stages, int client_fd, int upstream_fd, Listener& listener,
                SendOffload* offload = nullptr);
    ~SocketRelay() override;
    SocketRelay(const SocketRelay&) = delete;
    SocketRelay& operator=(const SocketRelay&) = delete;

    bool start();  // false when events could not be created
    void stop() override;
    std::size_t queued() const override;
    std::optional<CloseReason> stalled_peer_error() override;
    void tick() override;

private:
    // Laid out without padding holes: two per established tunnel, idle or not.
    struct Direction {
        SocketRelay* owner = nullptr;
        int from = -1;
        int to = -1;
        event* readable = nullptr;  // on `from`
        event* writable = nullptr;  // on `to`
        Stage stage;
        std::size_t in_stage = 0;      // bytes received and not yet sent
        SendStream* stream = nullptr;  // the send thread's queue for this direction, once it had bulk bytes
        bool upstream_bound = false;
        bool eof = false;
        bool shut = false;
        bool bulk = false;      // counted in the process's bulk directions
        bool received = false;  // since the last tick()
        bool reading = false;   // `readable` is added (set_reading)
        bool sent = false;      // the receiver took bytes since the last tick()
        bool released = false;  // the stage is a buffer release_pipe() filled (counted by the pool)
    };
    // Stages of the direction with the send thread (bytes earlier than its `stage`'s).
    static std::size_t pieces(const Direction& d);
    // This direction moves bulk bytes and no other of the process does.
    bool alone_in_bulk(const Direction& d) const;
    // A direction is bulk from a receive of kOffloadMin bytes or more until a receive of less
    // than a quarter of that (a trickle), a whole tick() interval with nothing received and
    // nothing waiting to be sent (a pause: otherwise a tunnel that went quiet after a large last
    // receive would keep every other bulk transfer from the send thread), its end of stream, or
    // the relay's stop; the process counts them (SendOffload::bulk_directions), and so does the
    // worker while they read (StagePool::bulk_readers, for fair turns).
    void set_bulk(Direction& d, bool bulk);
    // Reads the sender or stops (the readable event added or deleted), counting bulk readers.
    void set_reading(Direction& d, bool on);
    void count_bulk_reader(bool more);

    static void on_readable(evutil_socket_t, short, void* arg);
    static void on_writable(evutil_socket_t, short, void* arg);
    // Moves what it can; returns false when the relay ended (listener already told).
    bool pump(Direction& d);
    bool flush(Direction& d);
    // Bytes the direction's stage can take now (a buffer restarts at its front once empty).
    static std::size_t room(Direction& d);
    // One receive into / send from the direction's stage: > 0 bytes moved, 0 end of stream
    // (receive only), < 0 errno set.
    static ssize_t receive(Direction& d, std::size_t room);
    static ssize_t send(Direction& d);
    void finish_direction(Direction& d);
    // auto: a direction whose receiver took nothing for a whole tick() interval gives its pipe
    // back for transfers that move (while one was refused a pipe: StagePool::may_release); its
    // bytes wait in a buffer of their size instead.
    void release_pipe(Direction& d);
    // Gives the direction's stage back to the pool (discards it when it still has bytes),
    // uncounting a released one.
    void return_stage(Direction& d);
    void fail(CloseReason reason);
    // Moves the direction's stage to the send thread (or sends it here if there is none); false
    // when the relay ended.
    bool hand_off(Direction& d);
    // The send thread sent pieces, blocked on a full receiver, or failed.
    static void on_report(SendStream& stream);

    event_base* base_;
    StagePool& pool_;
    Listener& listener_;
    int client_fd_;
    int upstream_fd_;
    Direction up_;    // client → upstream
    Direction down_;  // upstream → client
    SendOffload* offload_;
    bool stopped_ = false;
    StageKind stages_;
};

}  // namespace dingbridge::proxy
