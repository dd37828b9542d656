#pragma once
// RunReporter: one run's record, told to the three places that follow a run — the terminal
// (a progress line on a tty), the log (progress lines at an interval, every failed item) and the
// history (the run row, its counters every second, one row per failed/skipped item). It owns the
// run's counters. A history write that fails marks the run unrecordable: history_ok() turns false
// and checkpoint() refuses, because nothing may be applied that the history does not hold.
// Messages and items are redacted with the config's secrets before they go anywhere.
// Single-threaded (the sync's or the event processor's thread).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/sync/history.h"
#include "shared/result.h"

namespace dingbridge::agent {

// A run's outcome; stored in the history as run_status_name() (the `runs.status` strings).
enum class RunStatus { running, succeeded, partial, failed, aborted, deferred };
const char* run_status_name(RunStatus status);
// The agent's exit code for a run that ended so: 0 succeeded, 3 partial, 4 aborted, else 1.
int run_status_exit_code(RunStatus status);

// An error text of at most kErrorTextMax bytes: a longer one keeps its head and its tail (where
// "(request id ...)" is) with the middle left out, cut between UTF-8 characters.
inline constexpr std::size_t kErrorTextMax = 4096;
std::string clip_error(std::string text);

class RunReporter {
public:
    RunReporter(HistoryStore& history, std::vector<std::string> secrets,
                std::chrono::milliseconds log_interval = std::chrono::seconds(10));

    // Records the start of the run (kind "full", "event"; trigger "cli", "schedule", ...).
    Status start(const std::string& kind, const std::string& trigger, bool dry_run);
    std::int64_t run_id() const { return run_id_; }
    RunCounters& counters() { return counters_; }
    const std::vector<std::string>& secrets() const { return secrets_; }
    bool history_ok() const { return history_ok_; }

    // Stores one item of the run (plan notes, skips, conflicts).
    void record(const RunItem& item);
    // A failed item: counted, logged as an error and stored (the error text redacted here).
    void item_failed(RunItem item);
    // Nothing may be applied unless this is ok: every write so far stored and the counters too.
    Status checkpoint();
    // Progress while fetching/applying: a tty line on stderr, a log line every log_interval
    // (when not on a tty; none when `log_line` is empty), the counters into the history every second,
    // and at once (at most every 200 ms) when DingTalk calls were made since the last write: a run
    // killed now is counted in the month's calls with what its row says.
    void progress(const std::string& tty_line, const std::string& log_line);
    void clear_line();
    // Stores the end (status, message, counters); when that fails the message says so and a
    // success becomes partial. Logs the outcome. The message is redacted.
    struct Outcome {
        RunStatus status;
        std::string message;
    };
    Outcome finish(RunStatus status, const std::string& message);

private:
    using Clock = std::chrono::steady_clock;
    HistoryStore& history_;
    std::vector<std::string> secrets_;
    std::chrono::milliseconds log_interval_;
    std::int64_t run_id_ = 0;
    RunCounters counters_;
    bool history_ok_ = true;
    bool tty_;
    Clock::time_point last_log_, last_db_;
    std::int64_t requests_written_ = 0;
};

}  // namespace dingbridge::agent
