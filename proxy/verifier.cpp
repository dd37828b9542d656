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
            // Longest queue drop: of the buckets with a job waiting, the one holding the most
            // (waiting and running) gives up its newest waiting job, but only if it holds at least
            // two more than this one: equal buckets do not take turns evicting each other, a
            // bucket alone keeps the whole queue, and with a queue of 1 a flood whose check is
            // running and one waiting (2) still yields that one to a newcomer (0).
            const std::size_t have = mine == buckets_.end() ? 0 : mine->second.held();
            auto victim = buckets_.end();
            for (auto it = buckets_.begin(); it != buckets_.end(); ++it)
                if (!it->second.waiting.empty() &&
                    (victim == buckets_.end() || it->second.held() > victim->second.held()))
                    victim = it;
            if (victim == buckets_.end() || victim->second.held() < have + 2) return false;
            dropped = std::move(victim->second.waiting.back().evicted);
            victim->second.waiting.pop_back();
            --queued_;
            if (victim->second.waiting.empty())  // its turn goes; it stays in buckets_ while running
                turns_.erase(std::find(turns_.begin(), turns_.end(), victim->first));
        }
        if (mine == buckets_.end()) mine = buckets_.emplace(std::string(bucket), Bucket{}).first;
        if (mine->second.waiting.empty()) turns_.push_back(mine->first);
        mine->second.waiting.push_back(Job{std::move(job), std::move(evicted)});
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
        // Running jobs finish; their threads still count them down in buckets_ (cleared below).
        for (auto& [name, b] : buckets_) b.waiting.clear();
        turns_.clear();
        queued_ = 0;
    }
    wake_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    buckets_.clear();
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
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
        wake_.wait(lock, [this] { return stopping_ || queued_ > 0; });
        if (stopping_) return;
        // The buckets in turn: a flood in one waits behind at most one job of each other.
        const auto bucket = buckets_.find(turns_.front());
        turns_.pop_front();
        std::function<void()> job = std::move(bucket->second.waiting.front().run);
        bucket->second.waiting.pop_front();
        --queued_;
        ++bucket->second.running;  // keeps the entry (and `bucket`) until it is counted down
        if (!bucket->second.waiting.empty()) turns_.push_back(bucket->first);
        lock.unlock();
        job();
        job = nullptr;  // what it holds goes before the count does
        lock.lock();
        --bucket->second.running;
        if (!stopping_ && bucket->second.held() == 0) buckets_.erase(bucket);
    }
}

}  // namespace dingbridge::proxy
