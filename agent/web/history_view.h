#pragma once
// HistoryView: the web console's read-only window on the agent's state database
// (<state_dir>/state.db: `runs`, `run_items` written by HistoryStore; `event_journal`,
// `api_calls`, `agent_state` written by the Journal) and on the SQLite target (names of the
// objects an error is about). Each view opens its own connection with SQLITE_OPEN_READONLY:
// it never writes, never creates a missing database, and in WAL mode it reads a snapshot
// without blocking a sync that is writing (a busy timeout covers checkpoints). Open one per
// request: cheap, and no connection is shared between threads.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/sync/history.h"

struct sqlite3;

namespace dingbridge::agent::web {

// A run item's error text split into what DingTalk said (ApiFailure::message's form
// "API: errcode N: errmsg (request id R)"); fields stay empty when the text has no such part.
struct ItemError {
    RunItem item;
    std::string api, errcode, errmsg, request_id;
};
ItemError parse_item_error(const RunItem& item);

struct EventState {
    std::int64_t pending = 0;
    std::int64_t given_up = 0;            // rows left to the next reconcile
    std::int64_t oldest_pending_ms = 0;   // 0 = none pending
    std::int64_t newest_received_ms = 0;  // 0 = no event yet
    std::int64_t last_alive_ms = 0;       // run mode's heartbeat (every 30 s)
};

struct Totals {
    std::map<std::pair<std::string, std::string>, std::int64_t> runs;  // (kind, status) -> count
    std::int64_t items_failed = 0;
    std::int64_t safeguard_aborts = 0;
    std::string last_success;  // finished_at of the newest succeeded run ("" = none)
};

class HistoryView {
public:
    explicit HistoryView(const std::string& state_db);  // never throws; see ok()/error()
    ~HistoryView();
    HistoryView(const HistoryView&) = delete;
    HistoryView& operator=(const HistoryView&) = delete;

    bool ok() const { return db_ != nullptr; }
    const std::string& error() const { return error_; }

    std::vector<RunRecord> runs(int limit);         // newest first, without items
    std::optional<RunRecord> run(std::int64_t id);  // with every item
    std::optional<RunRecord> last_full();           // newest finished full run that read the org
    std::int64_t calls_in_month(const std::string& month);
    std::optional<std::string> state(const std::string& key);
    EventState events();
    Totals totals();

private:
    bool has_table(const char* name);
    sqlite3* db_ = nullptr;
    std::string error_;
};

// Display names of departments ("department", id) and users ("user", id) in the SQLite target,
// read-only; objects not found are absent. Empty when the target is not readable.
std::map<std::pair<std::string, std::string>, std::string> object_names(
    const std::string& target_db, const std::vector<std::pair<std::string, std::string>>& objects);

// "2026-11-30T07:05:23.123Z" -> Unix milliseconds (0 when it is not that form).
std::int64_t iso_to_ms(const std::string& iso);

}  // namespace dingbridge::agent::web
