#include "proxy/send_offload.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <unordered_set>
#include <utility>

namespace dingbridge::proxy {

SendOffload::SendOffload(event_base* base, StagePool& pool, std::atomic<std::uint64_t>& sent_bytes,
                         std::atomic<std::size_t>& bulk_directions)
    : pool_(pool), sent_bytes_(sent_bytes), bulk_directions_(bulk_directions) {
    done_event_ = event_new(base, -1, 0, &SendOffload::on_done, this);
    if (done_event_ == nullptr) throw std::runtime_error("cannot create the send thread's event");
}

SendOffload::~SendOffload() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    // The thread is gone: what it did not take and what it reported are the worker's again. A
    // stream can be in both lists (reported, then scheduled again before it was orphaned).
    std::unordered_set<SendStream*> left(pending_.begin(), pending_.end());
    left.insert(done_.begin(), done_.end());
    for (SendStream* stream : left) finish(stream);
    event_free(done_event_);
}

bool SendOffload::push(SendStream& stream, Stage stage, std::size_t offset, std::size_t length) {
    if (!thread_.joinable()) {
        try {
            thread_ = std::thread([this] { run(); });
        } catch (const std::system_error&) {
            return false;
        }
    }
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stream.queue.push_back(SendStream::Piece{stage, offset, length});
        if (!stream.scheduled && !stream.blocked && stream.error == 0) {
            stream.scheduled = true;
            pending_.push_back(&stream);
            wake = true;
        }
    }
    if (wake) wake_.notify_one();
    return true;
}

void SendOffload::resume(SendStream& stream) {
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stream.blocked = false;
        if (!stream.scheduled && !stream.queue.empty() && stream.error == 0) {
            stream.scheduled = true;
            pending_.push_back(&stream);
            wake = true;
        }
    }
    if (wake) wake_.notify_one();
}

SendOffload::Collected SendOffload::collect(SendStream& stream) {
    Collected c;
    std::vector<Stage> sent;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sent.swap(stream.sent);
        c.progressed = std::exchange(stream.progressed, 0);
        c.blocked = stream.blocked;
        c.error = stream.error;
    }
    c.pieces_sent = sent.size();
    sent_bytes_.fetch_add(c.progressed, std::memory_order_relaxed);
    for (const Stage& s : sent) pool_.give(s);
    return c;
}

bool SendOffload::orphan(SendStream* stream) {
    bool now = false;
    bool fd_free = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stream->context = nullptr;  // the thread stops sending it
        fd_free = !stream->scheduled;
        stream->close_fd = !fd_free;
        now = !stream->scheduled && !stream->reported;
    }
    if (now) finish(stream);  // else on_done (or the destructor) finishes it
    return fd_free;
}

void SendOffload::finish(SendStream* stream) {
    if (stream->close_fd) ::close(stream->fd);
    for (const SendStream::Piece& p : stream->queue) pool_.discard(p.stage);
    for (const Stage& s : stream->sent) pool_.give(s);
    delete stream;
}

bool SendOffload::report_locked(SendStream& stream) {
    if (stream.reported) return false;
    stream.reported = true;
    done_.push_back(&stream);
    return true;
}

void SendOffload::on_done(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<SendOffload*>(arg);
    std::vector<SendStream*> batch;
    {
        std::lock_guard<std::mutex> lock(self->mutex_);
        batch.swap(self->done_);
    }
    // One at a time: a report may stop its relay, which orphans the other direction's stream
    // too; that stream keeps `reported` until its turn here, so orphan() leaves it to this loop.
    for (SendStream* stream : batch) {
        bool orphaned = false;
        bool finish_now = false;
        {
            std::lock_guard<std::mutex> lock(self->mutex_);
            stream->reported = false;
            orphaned = stream->context == nullptr;
            finish_now = orphaned && !stream->scheduled;
        }
        if (finish_now) {
            self->finish(stream);
        } else if (!orphaned) {
            stream->report(*stream);
        }  // orphaned and still with the thread: it reports again when it lets go
    }
}

void SendOffload::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        if (stopping_) return;
        SendStream& s = *pending_.front();
        pending_.pop_front();
        while (s.context != nullptr && !s.blocked && s.error == 0 && !s.queue.empty()) {
            const SendStream::Piece piece = s.queue.front();  // only the worker appends meanwhile
            lock.unlock();
            const char* data = piece.stage.data + piece.offset;
            std::size_t done = 0;
            int error = 0;
            bool would_block = false;
            while (done < piece.length) {
                const ssize_t n = ::send(s.fd, data + done, piece.length - done, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0) {
                    done += static_cast<std::size_t>(n);
                } else if (n < 0 && errno == EINTR) {
                    continue;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    would_block = true;
                    break;
                } else {
                    error = n < 0 ? errno : EPIPE;
                    break;
                }
            }
            lock.lock();
            SendStream::Piece& front = s.queue.front();
            front.offset += done;
            front.length -= done;
            s.progressed += done;
            if (front.length == 0) {
                s.sent.push_back(front.stage);
                s.queue.pop_front();
                if (report_locked(s)) {  // the worker may read into the freed room now
                    lock.unlock();
                    event_active(done_event_, EV_READ, 0);
                    lock.lock();
                }
            }
            s.blocked = would_block;
            s.error = error;
        }
        s.scheduled = false;
        if (report_locked(s)) {
            lock.unlock();
            event_active(done_event_, EV_READ, 0);  // outside our lock: libevent takes its own
            lock.lock();
        }
    }
}

}  // namespace dingbridge::proxy
