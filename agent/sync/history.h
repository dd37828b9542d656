#pragma once
// HistoryStore: the agent's state database (<state_dir>/state.db). One row per run in `runs`
// (kind, trigger, start, end, status, counts per operation, progress counters updated while the
// run goes on) and one row per failed or skipped item in `run_items`. A run left `running` by
// a process that no longer exists (SIGKILL, power loss) is closed as `failed` on the next open,
// and the DingTalk calls it had recorded (its progress counters, written each second) are then
// added to the month's count in `api_calls`: a run that never finished spent them all the same.
// Messages stored here never contain secrets (callers pass redacted text). Not thread-safe.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/org/plan.h"
#include "shared/result.h"

struct sqlite3;

namespace dingbridge::agent {
class Stmt;
// A run row still `running` whose process (runs.pid) no longer exists: it was killed or crashed.
bool run_process_gone(std::int64_t pid);
inline constexpr const char* kAbandonedRunMessage =
    "the agent stopped during this run (killed or crashed); the target kept its previous state";

// The month's DingTalk calls by kind ('full', 'event'); the event journal adds to it as runs end.
inline constexpr const char* kApiCallsSchema = R"SQL(
CREATE TABLE IF NOT EXISTS api_calls (
  month TEXT NOT NULL, kind TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(month, kind)
);
)SQL";
}  // namespace dingbridge::agent

namespace dingbridge::agent {

// The run counters, in `runs` column order: the one list behind RunCounters, the history
// columns, `history --json` and the summaries (the change kinds come from org/plan.h).
#define DINGBRIDGE_RUN_COUNTERS(X) \
    X(departments_fetched)         \
    X(users_fetched)               \
    X(requests)                    \
    X(retries)                     \
    X(throttled)                   \
    X(changes_planned)             \
    X(changes_applied)             \
    X(items_failed)                \
    X(items_skipped)               \
    DINGBRIDGE_CHANGE_COUNTERS(X)

struct RunCounters {
#define DINGBRIDGE_RUN_COUNTER(name) std::int64_t name = 0;
    DINGBRIDGE_RUN_COUNTERS(DINGBRIDGE_RUN_COUNTER)
#undef DINGBRIDGE_RUN_COUNTER
};

// The counters' column names, in the same order as for_each_counter visits them.
inline constexpr const char* kRunCounterNames[] = {
#define DINGBRIDGE_RUN_COUNTER_NAME(name) #name,
    DINGBRIDGE_RUN_COUNTERS(DINGBRIDGE_RUN_COUNTER_NAME)
#undef DINGBRIDGE_RUN_COUNTER_NAME
};

// Calls f(name, value) for every counter in column order (value is a reference into `c`).
template <class Counters, class F>
void for_each_counter(Counters& c, F&& f) {
#define DINGBRIDGE_RUN_COUNTER_VISIT(name) f(#name, c.name);
    DINGBRIDGE_RUN_COUNTERS(DINGBRIDGE_RUN_COUNTER_VISIT)
#undef DINGBRIDGE_RUN_COUNTER_VISIT
}

struct RunItem {
    std::string phase;        // fetch, apply, plan
    std::string object_type;  // department, user, page
    std::string external_id;
    std::string operation;  // e.g. update_user, /topapi/v2/user/list
    std::string error;
    std::string at{};  // when it was recorded (ISO-8601 UTC); filled by get()
};

struct RunRecord {
    std::int64_t id = 0;
    std::string kind;     // full
    std::string trigger;  // cli
    bool dry_run = false;
    std::string started_at, finished_at;  // ISO-8601 UTC
    std::string status;                   // running, succeeded, partial, failed, aborted
    std::string message;
    RunCounters counters;
    std::vector<RunItem> items;  // filled by get()
};

class HistoryStore {
public:
    explicit HistoryStore(const std::string& path);  // throws std::runtime_error
    ~HistoryStore();
    HistoryStore(const HistoryStore&) = delete;
    HistoryStore& operator=(const HistoryStore&) = delete;

    // Every write says whether it was stored (a locked or full state database fails after the
    // busy timeout) and why not. A sync applies nothing it could not record.
    // The new run's id.
    Result<std::int64_t> start_run(const std::string& kind, const std::string& trigger, bool dry_run);
    Status update_progress(std::int64_t id, const RunCounters& c);
    Status add_item(std::int64_t id, const RunItem& item);
    Status finish_run(std::int64_t id, const std::string& status, const std::string& message, const RunCounters& c);
    // Deletes runs that finished more than `keep` ago, with their items, except the last full
    // run that applied (the console's "last full sync"); returns how many runs went.
    Result<std::int64_t> prune(std::chrono::seconds keep);

    std::vector<RunRecord> list(int limit);
    std::optional<RunRecord> get(std::int64_t id);

private:
    sqlite3* db_ = nullptr;
};

std::string run_to_json(const RunRecord& r, bool with_items);

}  // namespace dingbridge::agent
