#pragma once
// Journal: the durable event journal and the agent's run-mode state, in the state database
// (<state_dir>/state.db, next to the run history). An event is committed here before it is
// ACKed (ARCHITECTURE.md "Incremental sync"); the dedup key (eventId, else messageId) makes a
// redelivery a no-op. Also holds the metered-call counter per calendar month (UTC) and a small
// key/value table (last full sync, quota state). Each thread opens its own Journal (one sqlite
// connection each; WAL + busy timeout make them cooperate). Errors are values.

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "shared/result.h"

struct sqlite3;

namespace dingbridge::agent::events {

struct JournalEvent {
    std::int64_t id = 0;     // row id (filled by pending())
    std::string dedup_key;   // eventId, else messageId
    std::string source;      // stream, push, failrecord
    std::string event_type;  // e.g. user_modify_org
    std::vector<std::string> user_ids;
    std::vector<std::string> dept_ids;
    std::int64_t born_ms = 0;      // when DingTalk says the event happened (0 = unknown)
    std::int64_t received_ms = 0;  // when the agent committed it
    int attempts = 0;
};

enum class RecordResult { inserted, duplicate, error };

class Journal {
public:
    explicit Journal(const std::string& path);  // throws std::runtime_error (startup only)
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    [[nodiscard]] RecordResult record(const JournalEvent& e, std::string& error);
    // Pending rows due now, oldest first: a row that failed (mark_attempt) waits 5 s after its
    // first attempt, then four times as long after each further one (20 s, 80 s, 5 min 20 s, ...,
    // at most an hour), so that events.give_up_after attempts span an outage of minutes instead
    // of seconds, and a row that keeps failing does not spend a call every few seconds.
    [[nodiscard]] std::vector<JournalEvent> pending(int limit);
    static constexpr std::int64_t kRetryFirstMs = 5000, kRetryMaxMs = 3600 * 1000;
    std::int64_t pending_count();
    // Marks rows applied (status done) or given up (status failed, with the error).
    [[nodiscard]] bool mark_done(const std::vector<std::int64_t>& ids, std::int64_t run_id);
    [[nodiscard]] bool mark_attempt(const std::vector<std::int64_t>& ids, const std::string& error, int give_up_after);
    // Marks every pending row done: a full sync that started after they were received covers them.
    // Rows naming a user or department in `not_covered` (external ids the sync failed to read or
    // write) stay pending, as do all of them when `none_covered`.
    [[nodiscard]] bool mark_covered_by_full(std::int64_t received_before_ms, std::int64_t run_id,
                                            const std::set<std::string>& not_covered_users = {},
                                            const std::set<std::string>& not_covered_depts = {},
                                            bool none_covered = false);
    std::int64_t newest_received_ms();

    // Metered DingTalk calls, per calendar month (UTC, "YYYY-MM").
    // Fails (SQLite's message) when the row could not be written, e.g. another writer held the
    // database longer than the busy timeout.
    Status add_calls(std::int64_t n, const std::string& kind);
    // Deletes settled rows (done, failed) received before `before_ms`; returns how many went.
    // A re-delivery of one of them (DingTalk re-pushes within minutes, failure records within 7
    // days) would then be journaled again: the retention is far longer than that.
    std::int64_t prune(std::int64_t before_ms);
    std::int64_t calls_in_month(const std::string& month, const std::string& kind = "");
    static std::string month_of(std::int64_t unix_s);
    static std::string this_month();

    std::optional<std::string> get(const std::string& key);
    void set(const std::string& key, const std::string& value);

    sqlite3* db() { return db_; }

private:
    sqlite3* db_ = nullptr;
};

inline std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Test failpoint (crash-safety tests): when DINGBRIDGE_AGENT_FAILPOINT equals `name`, the
// process kills itself with SIGKILL right there, as a crash or `kill -9` would.
void failpoint(const char* name);

}  // namespace dingbridge::agent::events
