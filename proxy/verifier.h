#pragma once
// The credential verification pool of dingbridge-proxy: a few threads that run the slow
// password checks (scrypt, tens of ms and ~32 MiB each) so that no event loop ever does.
// The queue is bounded: `submit` refuses at once (returns false) when `queue_limit` jobs are
// already waiting, so a flood of wrong passwords costs at most `threads` cores and never
// grows memory; the caller answers 503 and the client may retry.
//
// Checks are queued per bucket (the proxy uses the tenant whose source_networks hold the
// client's address), so one tenant's flood cannot starve another's logins: the threads take
// the buckets in turn, and a full queue makes room for a bucket that holds fewer jobs (waiting
// and running) by dropping the newest waiting job of the bucket that holds the most (its
// `evicted` callback runs, on the submitting thread, outside the pool's lock). A bucket alone
// may still use the whole queue. Thread-safe.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
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

    // Queues `job` for a pool thread under `bucket`; false when the queue is full and no bucket
    // holds two jobs more than this one (or the pool stopped). `evicted` runs if the job is later
    // dropped unrun to make room for another bucket's (never after stop()).
    [[nodiscard]] bool submit(std::string_view bucket, std::function<void()> job, std::function<void()> evicted = {});
    [[nodiscard]] bool submit(std::function<void()> job) { return submit({}, std::move(job)); }
    // Finishes the running jobs, drops the queued ones, joins the threads. Idempotent.
    void stop();

    unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
    std::size_t queue_limit() const { return queue_limit_; }

private:
    void run();

    struct Job {
        std::function<void()> run;
        std::function<void()> evicted;
    };

    std::size_t queue_limit_;
    std::mutex mutex_;
    std::condition_variable wake_;
    struct Bucket {
        std::deque<Job> waiting;
        std::size_t running = 0;
        std::size_t held() const { return waiting.size() + running; }
    };

    std::map<std::string, Bucket, std::less<>> buckets_;  // the buckets with jobs waiting or running
    std::deque<std::string> turns_;                       // those with jobs waiting, each once, next first
    std::size_t queued_ = 0;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace dingbridge::proxy
