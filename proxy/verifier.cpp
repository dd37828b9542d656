#include "proxy/verifier.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace dingbridge::proxy {

VerifierPool::VerifierPool(unsigned threads, std::size_t queue_limit) : queue_limit_(queue_limit) {
    if (threads == 0) threads = 1;
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

VerifierPool::~VerifierPool() { stop(); }

bool VerifierPool::submit(std::function<void()> job) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || queue_.size() >= queue_limit_) return false;
        queue_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
}

void VerifierPool::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
        queue_.clear();
    }
    wake_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

void VerifierPool::run() {
    // Password checks are deliberately slow (scrypt) and anyone can ask for one. On a busy host
    // they run at a lower priority than the event loops, so a flood of wrong passwords takes
    // only spare CPU from the tenants' open tunnels and cached logins (nice 10: about a tenth of
    // a core against a busy worker, all of it when the worker is idle). Linux applies
    // setpriority to the calling thread when given its thread id; failure only leaves the
    // process's own nice value.
    const auto self = static_cast<id_t>(syscall(SYS_gettid));
    (void)setpriority(PRIO_PROCESS, self, std::min(19, getpriority(PRIO_PROCESS, self) + kCheckNice));
    while (true) {
        std::function<void()> job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        job();
    }
}

}  // namespace dingbridge::proxy
