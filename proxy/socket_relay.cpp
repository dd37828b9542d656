#include "proxy/socket_relay.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>
#include <utility>

#include "proxy/send_offload.h"

namespace dingbridge::proxy {

namespace {

// Receives per readable event before yielding to other tunnels on this worker.
constexpr int kPumpRounds = 4;

void close_pipe(const Stage& s) {
    ::close(s.read_fd);
    ::close(s.write_fd);
}

// Large buffers are mapped directly, so a released one goes back to the system at once instead
// of staying in the allocator's arena; small ones come from the allocator.
void free_buffer(const Stage& s) {
    if (s.capacity == StagePool::kLargeBuffer) {
        ::munmap(s.data, s.capacity);
    } else {
        std::free(s.data);
    }
}

}  // namespace

StagePool::~StagePool() {
    for (const Stage& s : free_pipes_) close_pipe(s);
    for (const Stage& s : free_buffers_) free_buffer(s);
}

void StagePool::set_keep_pipes(std::size_t keep) {
    keep_pipes_ = keep;
    while (free_pipes_.size() > keep_pipes_) {
        close_pipe(free_pipes_.back());
        free_pipes_.pop_back();
    }
}

Stage StagePool::lend_pipe() {
    if (pipes_lent_ < max_pipes_lent_) return take(true);
    last_refusal_ = std::chrono::steady_clock::now();
    refused_ = true;
    return Stage{};
}

bool StagePool::may_release(std::size_t bytes) const {
    return refused_ && released_ + bytes <= kReleasedMax &&
           std::chrono::steady_clock::now() - last_refusal_ < std::chrono::seconds(30);
}

Stage StagePool::take_buffer(std::size_t capacity) {
    Stage s;
    if (capacity == 0 || capacity >= kLargeBuffer) return s;  // large ones are mapped (free_buffer)
    s.data = static_cast<char*>(std::malloc(capacity));
    if (s.data != nullptr) s.capacity = static_cast<std::uint32_t>(capacity);
    return s;
}

Stage StagePool::take(bool pipe) {
    std::vector<Stage>& spare = pipe ? free_pipes_ : free_buffers_;
    if (!spare.empty()) {
        Stage s = spare.back();
        spare.pop_back();
        ++(pipe ? pipes_lent_ : large_in_use_);
        return s;
    }
    Stage s;
    if (pipe) {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return s;
        ++pipes_lent_;
        const int size = fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kPipeSize));
        s.read_fd = fds[0];
        s.write_fd = fds[1];
        s.capacity = static_cast<std::uint32_t>(size > 0 ? size : fcntl(fds[1], F_GETPIPE_SZ));
        return s;
    }
    if (large_in_use_ < kLargeBuffersInUse) {
        void* p = ::mmap(nullptr, kLargeBuffer, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            ++large_in_use_;
            s.data = static_cast<char*>(p);
            s.capacity = kLargeBuffer;
            return s;
        }
    }
    s.data = static_cast<char*>(std::malloc(kSmallBuffer));
    if (s.data == nullptr) return s;
    s.capacity = kSmallBuffer;
    return s;
}

void StagePool::give(Stage stage) {
    if (stage.is_pipe()) {
        --pipes_lent_;
        if (free_pipes_.size() < keep_pipes_) {
            free_pipes_.push_back(stage);
        } else {
            close_pipe(stage);
        }
        return;
    }
    if (stage.capacity == kLargeBuffer) {
        --large_in_use_;
        if (free_buffers_.size() < kKeepBuffers) {
            stage.sent = 0;
            free_buffers_.push_back(stage);
            return;
        }
    }
    free_buffer(stage);
}

void StagePool::discard(Stage stage) {
    if (stage.is_pipe()) {
        --pipes_lent_;
        close_pipe(stage);  // a pipe with bytes still in it cannot be reused by another tunnel
        return;
    }
    if (stage.capacity == kLargeBuffer) --large_in_use_;
    free_buffer(stage);
}

SocketRelay::SocketRelay(event_base* base, StagePool& pool, StageKind stages, int client_fd, int upstream_fd,
                         Listener& listener, SendOffload* offload)
    : base_(base),
      pool_(pool),
      listener_(listener),
      client_fd_(client_fd),
      upstream_fd_(upstream_fd),
      offload_(stages == StageKind::buffer ? offload : nullptr),
      stages_(stages) {
    up_.owner = down_.owner = this;
    up_.upstream_bound = true;
    up_.from = down_.to = client_fd;
    up_.to = down_.from = upstream_fd;
}

SocketRelay::~SocketRelay() {
    stop();
    for (Direction* d : {&up_, &down_}) {
        if (d->readable) event_free(d->readable);
        if (d->writable) event_free(d->writable);
    }
}

bool SocketRelay::start() {
    for (Direction* d : {&up_, &down_}) {
        d->readable = event_new(base_, d->from, EV_READ | EV_PERSIST, &SocketRelay::on_readable, d);
        d->writable = event_new(base_, d->to, EV_WRITE | EV_PERSIST, &SocketRelay::on_writable, d);
        if (!d->readable || !d->writable) return false;
        set_reading(*d, true);
    }
    return true;
}

void SocketRelay::stop() {
    if (stopped_) return;
    stopped_ = true;
    bool close_client = true;
    bool close_upstream = true;
    for (Direction* d : {&up_, &down_}) {
        set_reading(*d, false);
        if (d->writable) event_del(d->writable);
        set_bulk(*d, false);
        if (d->stream != nullptr) {
            // The send thread may be in send(2) on d->to right now: then the offload closes it.
            if (!offload_->orphan(std::exchange(d->stream, nullptr)))
                (d->upstream_bound ? close_upstream : close_client) = false;
        }
        if (d->stage.held()) return_stage(*d);
    }
    if (close_client) ::close(client_fd_);
    if (close_upstream) ::close(upstream_fd_);
}

std::size_t socket_send_queue(int fd) {
    int pending = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &pending) != 0 || pending < 0) return 0;
    return static_cast<std::size_t>(pending);
}

std::size_t SocketRelay::queued() const {
    if (stopped_) return 0;
    std::size_t with_thread = 0;
    for (const Direction* d : {&up_, &down_})
        if (d->stream != nullptr) with_thread += d->stream->unsent;
    return up_.in_stage + down_.in_stage + with_thread + socket_send_queue(client_fd_) +
           socket_send_queue(upstream_fd_);
}

std::optional<CloseReason> pending_socket_error(int client_fd, int upstream_fd) {
    // POLLERR reports a hard error only (a reset, a retransmission timeout). SO_ERROR would also
    // report a soft one (an ICMP unreachable during retransmits, which TCP may still recover
    // from); POLLHUP or TCP_CLOSE would also match a clean close whose last bytes still wait
    // to be read.
    pollfd fds[2] = {{client_fd, 0, 0}, {upstream_fd, 0, 0}};
    if (poll(fds, 2, 0) <= 0) return std::nullopt;
    if (fds[0].revents & POLLERR) return CloseReason::client_error;
    if (fds[1].revents & POLLERR) return CloseReason::upstream_error;
    return std::nullopt;
}

std::optional<CloseReason> SocketRelay::stalled_peer_error() {
    if (stopped_) return std::nullopt;
    if (up_.in_stage + down_.in_stage + pieces(up_) + pieces(down_) == 0) return std::nullopt;  // reading both
    return pending_socket_error(client_fd_, upstream_fd_);
}

void SocketRelay::tick() {
    if (stopped_) return;
    for (Direction* d : {&up_, &down_}) {
        if (!d->received && d->in_stage == 0 && pieces(*d) == 0) set_bulk(*d, false);
        if (stages_ == StageKind::pipe_when_bulk && d->stage.held() && d->stage.is_pipe() && d->in_stage > 0 &&
            !d->sent && pool_.may_release(d->in_stage))
            release_pipe(*d);
        d->received = false;
        d->sent = false;
    }
}

void SocketRelay::release_pipe(Direction& d) {
    Stage buffer = pool_.take_buffer(d.in_stage);
    if (!buffer.held()) return;  // keeps the pipe
    std::size_t moved = 0;
    while (moved < d.in_stage) {
        const ssize_t n = ::read(d.stage.read_fd, buffer.data + moved, d.in_stage - moved);
        if (n <= 0) break;
        moved += static_cast<std::size_t>(n);
    }
    if (moved != d.in_stage) {
        // (Never: the pipe holds exactly in_stage bytes.) Some of them left it, so neither stage
        // has them all: the tunnel cannot go on intact.
        pool_.give(buffer);
        fail(CloseReason::out_of_memory);
        return;
    }
    pool_.give(d.stage);  // empty now: reused, or closed beyond the spares kept
    d.stage = buffer;     // sent from on_writable, as any buffer
    d.released = true;
    pool_.count_released(buffer.capacity, true);
}

void SocketRelay::return_stage(Direction& d) {
    if (d.released) {
        pool_.count_released(d.stage.capacity, false);
        d.released = false;
    }
    if (d.in_stage == 0) {
        pool_.give(d.stage);
    } else {
        pool_.discard(d.stage);
    }
    d.stage = Stage{};
}

void SocketRelay::fail(CloseReason reason) {
    stop();
    listener_.relay_finished(reason);
}

void SocketRelay::on_readable(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Direction*>(arg);
    d->owner->pump(*d);
}

void SocketRelay::on_writable(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Direction*>(arg);
    SocketRelay* self = d->owner;
    if (pieces(*d) > 0) {
        // The receiver has room again for what the send thread could not place.
        event_del(d->writable);
        self->offload_->resume(*d->stream);
        return;
    }
    if (!self->flush(*d)) return;
    if (d->in_stage == 0) {
        event_del(d->writable);
        if (d->eof) {
            self->finish_direction(*d);
        } else {
            self->set_reading(*d, true);  // the receiver caught up: read the sender again
        }
    }
}

std::size_t SocketRelay::room(Direction& d) {
    Stage& st = d.stage;
    if (st.is_pipe()) return st.capacity - d.in_stage;
    if (d.in_stage == 0) st.sent = 0;  // empty: fill from the front again
    return st.capacity - st.sent - d.in_stage;
}

ssize_t SocketRelay::receive(Direction& d, std::size_t room) {
    Stage& st = d.stage;
    if (st.is_pipe()) return splice(d.from, nullptr, st.write_fd, nullptr, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    return ::recv(d.from, st.data + st.sent + d.in_stage, room, MSG_DONTWAIT);
}

ssize_t SocketRelay::send(Direction& d) {
    Stage& st = d.stage;
    if (st.is_pipe()) return splice(st.read_fd, nullptr, d.to, nullptr, d.in_stage, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    const ssize_t n = ::send(d.to, st.data + st.sent, d.in_stage, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) st.sent += static_cast<std::size_t>(n);
    return n;
}

bool SocketRelay::pump(Direction& d) {
    for (int round = 0; round < kPumpRounds; ++round) {
        // Fair turns: while many bulk directions of this worker read their senders, every
        // direction's turn is one bounded receive (asked each round: this one may have just
        // become bulk).
        const bool short_turn = pool_.bulk_readers() > kBulkAloneMax;
        if (short_turn && round > 0) break;
        if (short_turn) pool_.short_turn_taken();
        // The send thread is behind, or another bulk transfer started: wait for its report (the
        // latter until it has sent them all, then this direction sends on here).
        if (pieces(d) > 0 && (d.stream->pieces >= d.stream->piece_limit || !alone_in_bulk(d))) break;
        if (!d.stage.held()) {
            if (stages_ == StageKind::pipe_when_bulk && d.bulk) d.stage = pool_.lend_pipe();
            // auto: a bulk direction copies when the worker has no pipe to lend.
            if (!d.stage.held()) d.stage = pool_.take(stages_ == StageKind::pipe);
            if (!d.stage.held()) {
                fail(stages_ == StageKind::pipe ? CloseReason::no_pipe : CloseReason::out_of_memory);
                return false;
            }
        }
        // A direction reads only while its stage is empty (below), so the room is all of it.
        std::size_t space = room(d);
        if (space == 0) break;  // (never: reading is off while a stage waits) recv(0) would look like EOF
        if (short_turn && space > kFairRound) space = kFairRound;
        ssize_t n = receive(d, space);
        if (n < 0 && errno == EAGAIN && d.stage.is_pipe() && sockatmark(d.from) == 1) {
            // splice(2) stops at TCP urgent data and says EAGAIN while the socket stays readable:
            // the direction would spin at full CPU and never relay the bytes behind the mark.
            // recv(2) reads past it (leaving out the urgent byte, as the copy relay always has), so
            // this one receive goes through a buffer.
            pool_.give(d.stage);
            d.stage = pool_.take(false);
            if (!d.stage.held()) {
                fail(CloseReason::out_of_memory);
                return false;
            }
            space = room(d);
            if (short_turn && space > kFairRound) space = kFairRound;
            n = receive(d, space);
        }
        if (n > 0) {
            d.in_stage += static_cast<std::size_t>(n);
            d.received = true;
            if (d.stage.is_pipe()) pool_.spliced(static_cast<std::size_t>(n));
            listener_.relay_progress(d.upstream_bound, static_cast<std::size_t>(n));
            if (static_cast<std::size_t>(n) >= kOffloadMin) {
                set_bulk(d, true);
            } else if (static_cast<std::size_t>(n) < kOffloadMin / 4) {
                set_bulk(d, false);
            }
        } else if (n == 0) {
            set_bulk(d, false);
            d.eof = true;
            set_reading(d, false);
        } else if (errno != EAGAIN && errno != EINTR) {
            fail(d.upstream_bound ? CloseReason::client_error : CloseReason::upstream_error);
            return false;
        }
        const bool more = n > 0 && static_cast<std::size_t>(n) == space;  // the sender may have more
        // Bulk bytes go to the send thread, and once some are there, every later byte follows them.
        if (offload_ != nullptr && (pieces(d) > 0 || (d.in_stage >= kOffloadMin && alone_in_bulk(d)))) {
            if (d.in_stage > 0 && !hand_off(d)) return false;
            if (pieces(d) == 0 || !more) break;
            continue;
        }
        if (!flush(d)) return false;
        // Go round again only while the sender had more than one stage's worth and the receiver
        // kept up; otherwise wait for the next event.
        if (n <= 0 || static_cast<std::size_t>(n) < space || d.in_stage > 0) break;
    }
    if (pieces(d) > 0) {
        // on_report goes on from here (and finishes the direction after its last piece).
        if (d.stream->pieces >= d.stream->piece_limit || !alone_in_bulk(d)) set_reading(d, false);
        return true;
    }
    if (d.in_stage > 0) {
        // The receiver is slower: stop reading the sender until the stage drains.
        set_reading(d, false);
        event_add(d.writable, nullptr);
        return true;
    }
    if (d.eof) finish_direction(d);
    return true;
}

bool SocketRelay::flush(Direction& d) {
    while (d.in_stage > 0) {
        const ssize_t n = send(d);
        if (n > 0) {
            d.in_stage -= static_cast<std::size_t>(n);
            d.sent = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
        fail(d.upstream_bound ? CloseReason::upstream_error : CloseReason::client_error);
        return false;
    }
    if (d.stage.held()) return_stage(d);  // empty: an idle direction holds no stage
    return true;
}

std::size_t SocketRelay::pieces(const Direction& d) { return d.stream != nullptr ? d.stream->pieces : 0; }

bool SocketRelay::alone_in_bulk(const Direction& d) const {
    return d.bulk && offload_->bulk_directions().load(std::memory_order_relaxed) == 1;
}

void SocketRelay::set_reading(Direction& d, bool on) {
    if (d.readable == nullptr || d.reading == on) return;
    d.reading = on;
    if (on) {
        event_add(d.readable, nullptr);
    } else {
        event_del(d.readable);
    }
    if (d.bulk) count_bulk_reader(on);
}

void SocketRelay::count_bulk_reader(bool more) {
    if (more) {
        ++pool_.bulk_readers();
    } else {
        --pool_.bulk_readers();
    }
}

void SocketRelay::set_bulk(Direction& d, bool bulk) {
    if (d.bulk == bulk) return;
    d.bulk = bulk;
    if (d.reading) count_bulk_reader(bulk);
    if (offload_ == nullptr) return;
    if (bulk) {
        offload_->bulk_directions().fetch_add(1, std::memory_order_relaxed);
    } else {
        offload_->bulk_directions().fetch_sub(1, std::memory_order_relaxed);
    }
}

bool SocketRelay::hand_off(Direction& d) {
    if (d.stream == nullptr) {
        d.stream = new (std::nothrow) SendStream;
        if (d.stream == nullptr) return flush(d);
        d.stream->fd = d.to;
        d.stream->report = &SocketRelay::on_report;
        d.stream->context = &d;
    }
    if (!offload_->push(*d.stream, d.stage, d.stage.sent, d.in_stage)) return flush(d);  // no send thread
    ++d.stream->pieces;
    d.stream->piece_limit = d.stage.capacity == StagePool::kLargeBuffer ? kMaxPieces : 1;
    d.stream->unsent += d.in_stage;
    d.stage = Stage{};
    d.in_stage = 0;
    return true;
}

void SocketRelay::on_report(SendStream& stream) {
    Direction& d = *static_cast<Direction*>(stream.context);
    SocketRelay* self = d.owner;
    const SendOffload::Collected c = self->offload_->collect(stream);
    stream.pieces = static_cast<std::uint16_t>(stream.pieces - c.pieces_sent);
    stream.unsent -= c.progressed;
    if (c.progressed > 0) self->listener_.relay_progress(d.upstream_bound, 0);  // the receiver took bytes
    if (c.error != 0) {
        self->fail(d.upstream_bound ? CloseReason::upstream_error : CloseReason::client_error);
        return;
    }
    if (stream.pieces > 0) {
        if (c.blocked) event_add(d.writable, nullptr);  // resumed from on_writable
        if (!d.eof && stream.pieces < stream.piece_limit && self->alone_in_bulk(d)) self->set_reading(d, true);
        return;
    }
    // All sent. A late report (the thread's end of run) for a direction that sends on its own
    // again, with bytes in its stage waiting for the receiver, changes nothing: reading then
    // would append to that stage, and on_writable reads on once it is empty.
    if (d.in_stage > 0) return;
    if (d.eof) {
        self->finish_direction(d);
    } else {
        self->set_reading(d, true);
    }
}

void SocketRelay::finish_direction(Direction& d) {
    if (d.shut) return;
    d.shut = true;
    // Half-close: the sender is done and everything reached the receiver; pass the FIN on.
    shutdown(d.to, SHUT_WR);
    if (up_.shut && down_.shut) {
        stop();
        listener_.relay_finished(CloseReason::completed);
    }
}

}  // namespace dingbridge::proxy
