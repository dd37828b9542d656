#pragma once
// HistoryStore: the agent's state database (<state_dir>/state.db). One row per run in `runs`
// (kind, trigger, start, end, status, counts per operation, progress counters updated while the
// run goes on) and one row per failed or skipped item in `run_items`. A run left `running` by
// a process that no longer exists (SIGKILL, power loss) is closed as `failed` on the next open.
// Messages stored here never contain secrets (callers pass redacted text). Not thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace dingbridge::agent {
class Stmt;
}

namespace dingbridge::agent {

struct RunCounters {
    std::int64_t departments_fetched = 0;
    std::int64_t users_fetched = 0;
    std::int64_t requests = 0;
    std::int64_t retries = 0;
    std::int64_t throttled = 0;
    std::int64_t changes_planned = 0;
    std::int64_t changes_applied = 0;
    std::int64_t items_failed = 0;
    std::int64_t items_skipped = 0;
    std::int64_t create_department = 0, update_department = 0, delete_department = 0;
    std::int64_t create_user = 0, update_user = 0, disable_user = 0, delete_user = 0;
};

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
    // busy timeout); last_error() tells why. A sync applies nothing it could not record.
    // The new run's id, or 0 when it could not be recorded.
    [[nodiscard]] std::int64_t start_run(const std::string& kind, const std::string& trigger, bool dry_run);
    bool update_progress(std::int64_t id, const RunCounters& c);  // progress only: may be ignored
    [[nodiscard]] bool add_item(std::int64_t id, const RunItem& item);
    [[nodiscard]] bool finish_run(std::int64_t id, const std::string& status, const std::string& message,
                                  const RunCounters& c);
    const std::string& last_error() const { return last_error_; }

    std::vector<RunRecord> list(int limit);
    std::optional<RunRecord> get(std::int64_t id);

private:
    bool step_done(Stmt& st);

    sqlite3* db_ = nullptr;
    std::string last_error_;
};

std::string run_to_json(const RunRecord& r, bool with_items);

}  // namespace dingbridge::agent
