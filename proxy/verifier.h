#pragma once
// The credential verification pool of dingbridge-proxy: a few threads that run the slow
// password checks (scrypt, tens of ms and ~32 MiB each) so that no event loop ever does.
// The queue is bounded: `submit` refuses at once (returns false) when `queue_limit` jobs are
// already waiting, so a flood of wrong passwords costs at most `threads` cores and never
// grows memory; the caller answers 503 and the client may retry. Thread-safe.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dingbridge::proxy {

class VerifierPool {
public:
    static constexpr int kCheckNice = 10;  // added to the process's nice value in the pool threads (see run())

    VerifierPool(unsigned threads, std::size_t queue_limit);
    ~VerifierPool();
    VerifierPool(const VerifierPool&) = delete;
    VerifierPool& operator=(const VerifierPool&) = delete;

    // Queues `job` for a pool thread; false when the queue is full or the pool stopped.
    [[nodiscard]] bool submit(std::function<void()> job);
    // Finishes the running jobs, drops the queued ones, joins the threads. Idempotent.
    void stop();

    unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
    std::size_t queue_limit() const { return queue_limit_; }

private:
    void run();

    std::size_t queue_limit_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace dingbridge::proxy
