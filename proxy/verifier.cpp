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

bool VerifierPool::submit(std::string_view bucket, std::function<void()> job, std::function<void()> evicted) {
    std::function<void()> dropped;  // the evicted job's callback, run outside the lock
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || queue_limit_ == 0) return false;
        auto mine = buckets_.find(bucket);
        if (queued_ >= queue_limit_) {
            // Longest queue drop: the bucket holding the most gives up its newest job, but only
            // if it holds at least two more than this one (equal buckets do not take turns
            // evicting each other, and the one that is alone keeps the whole queue).
            const std::size_t have = mine == buckets_.end() ? 0 : mine->second.size();
            auto largest = buckets_.begin();
            for (auto it = buckets_.begin(); it != buckets_.end(); ++it)
                if (it->second.size() > largest->second.size()) largest = it;
            if (largest == buckets_.end() || largest->second.size() < have + 2) return false;
            dropped = std::move(largest->second.back().evicted);
            largest->second.pop_back();  // it held at least two: it stays in buckets_ and turns_
            --queued_;
        }
        if (mine == buckets_.end()) {
            mine = buckets_.emplace(std::string(bucket), std::deque<Job>{}).first;
            turns_.push_back(mine->first);
        }
        mine->second.push_back(Job{std::move(job), std::move(evicted)});
        ++queued_;
    }
    wake_.notify_one();
    if (dropped) dropped();
    return true;
}

void VerifierPool::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
        buckets_.clear();
        turns_.clear();
        queued_ = 0;
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
            wake_.wait(lock, [this] { return stopping_ || queued_ > 0; });
            if (stopping_) return;
            // The buckets in turn: a flood in one waits behind at most one job of each other.
            auto bucket = buckets_.find(turns_.front());
            turns_.pop_front();
            job = std::move(bucket->second.front().run);
            bucket->second.pop_front();
            --queued_;
            if (bucket->second.empty()) {
                buckets_.erase(bucket);
            } else {
                turns_.push_back(bucket->first);
            }
        }
        job();
    }
}

}  // namespace dingbridge::proxy
