#include "proxy/splice_relay.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace dingbridge::proxy {

namespace {

// Pipes are enlarged to this size (the default is 64 KiB): fewer splice calls and wakeups per
// megabyte. Kernels may refuse (pipe-max-size, per-user pipe quota); then the default stays.
constexpr int kPipeSize = 256 * 1024;
// Reads per readable event before yielding to other tunnels on this worker.
constexpr int kPumpRounds = 4;

}  // namespace

PipePool::~PipePool() {
    for (const Pipe& p : free_) {
        ::close(p.read_fd);
        ::close(p.write_fd);
    }
}

std::optional<Pipe> PipePool::take() {
    if (!free_.empty()) {
        Pipe p = free_.back();
        free_.pop_back();
        return p;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return std::nullopt;
    const int size = fcntl(fds[1], F_SETPIPE_SZ, kPipeSize);
    return Pipe{fds[0], fds[1], static_cast<std::size_t>(size > 0 ? size : fcntl(fds[1], F_GETPIPE_SZ))};
}

void PipePool::give(Pipe pipe) {
    if (free_.size() < keep_) {
        free_.push_back(pipe);
    } else {
        ::close(pipe.read_fd);
        ::close(pipe.write_fd);
    }
}

SpliceRelay::SpliceRelay(event_base* base, PipePool& pool, int client_fd, int upstream_fd, Listener& listener)
    : base_(base), pool_(pool), listener_(listener), client_fd_(client_fd), upstream_fd_(upstream_fd) {
    up_.owner = down_.owner = this;
    up_.upstream_bound = true;
    up_.from = down_.to = client_fd;
    up_.to = down_.from = upstream_fd;
}

SpliceRelay::~SpliceRelay() {
    stop();
    for (Direction* d : {&up_, &down_}) {
        if (d->readable) event_free(d->readable);
        if (d->writable) event_free(d->writable);
    }
}

bool SpliceRelay::start() {
    for (Direction* d : {&up_, &down_}) {
        d->readable = event_new(base_, d->from, EV_READ | EV_PERSIST, &SpliceRelay::on_readable, d);
        d->writable = event_new(base_, d->to, EV_WRITE | EV_PERSIST, &SpliceRelay::on_writable, d);
        if (!d->readable || !d->writable) return false;
        event_add(d->readable, nullptr);
    }
    return true;
}

void SpliceRelay::stop() {
    if (stopped_) return;
    stopped_ = true;
    for (Direction* d : {&up_, &down_}) {
        if (d->readable) event_del(d->readable);
        if (d->writable) event_del(d->writable);
        if (d->pipe) {
            // A pipe with bytes still in it cannot be reused by another tunnel.
            if (d->in_pipe == 0) {
                pool_.give(*d->pipe);
            } else {
                ::close(d->pipe->read_fd);
                ::close(d->pipe->write_fd);
            }
            d->pipe.reset();
        }
    }
    ::close(client_fd_);
    ::close(upstream_fd_);
}

std::size_t socket_send_queue(int fd) {
    int pending = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &pending) != 0 || pending < 0) return 0;
    return static_cast<std::size_t>(pending);
}

std::size_t SpliceRelay::queued() const {
    if (stopped_) return 0;
    return up_.in_pipe + down_.in_pipe + socket_send_queue(client_fd_) + socket_send_queue(upstream_fd_);
}

void SpliceRelay::fail(CloseReason reason) {
    stop();
    listener_.relay_finished(reason);
}

void SpliceRelay::on_readable(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Direction*>(arg);
    d->owner->pump(*d);
}

void SpliceRelay::on_writable(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Direction*>(arg);
    SpliceRelay* self = d->owner;
    if (!self->flush(*d)) return;
    if (d->in_pipe == 0) {
        event_del(d->writable);
        if (d->eof) {
            self->finish_direction(*d);
        } else {
            event_add(d->readable, nullptr);  // the receiver caught up: read the sender again
        }
    }
}

bool SpliceRelay::pump(Direction& d) {
    for (int round = 0; round < kPumpRounds; ++round) {
        if (!d.pipe) {
            d.pipe = pool_.take();
            if (!d.pipe) {
                fail(CloseReason::no_pipe);
                return false;
            }
        }
        const std::size_t room = d.pipe->capacity - d.in_pipe;
        const ssize_t n = splice(d.from, nullptr, d.pipe->write_fd, nullptr, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d.in_pipe += static_cast<std::size_t>(n);
            listener_.relay_progress(d.upstream_bound, static_cast<std::size_t>(n));
        } else if (n == 0) {
            d.eof = true;
            event_del(d.readable);
        } else if (errno != EAGAIN && errno != EINTR) {
            fail(d.upstream_bound ? CloseReason::client_error : CloseReason::upstream_error);
            return false;
        }
        if (!flush(d)) return false;
        // Go round again only while the sender had more than one pipe's worth and the receiver
        // kept up; otherwise wait for the next event.
        if (n <= 0 || static_cast<std::size_t>(n) < room || d.in_pipe > 0) break;
    }
    if (d.in_pipe > 0) {
        // The receiver is slower: stop reading the sender until the pipe drains.
        event_del(d.readable);
        event_add(d.writable, nullptr);
        return true;
    }
    if (d.eof) finish_direction(d);
    return true;
}

bool SpliceRelay::flush(Direction& d) {
    while (d.in_pipe > 0) {
        const ssize_t n = splice(d.pipe->read_fd, nullptr, d.to, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d.in_pipe -= static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
        fail(d.upstream_bound ? CloseReason::upstream_error : CloseReason::client_error);
        return false;
    }
    if (d.pipe) {
        pool_.give(*d.pipe);  // empty: an idle direction holds no pipe
        d.pipe.reset();
    }
    return true;
}

void SpliceRelay::finish_direction(Direction& d) {
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
