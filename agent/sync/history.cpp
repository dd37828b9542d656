#include "agent/sync/history.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <stdexcept>

#include "agent/targets/sqlite_util.h"
#include "shared/log.h"

namespace dingbridge::agent {

namespace {

#define DINGBRIDGE_COUNTER_COLUMN(name) ",\n  " #name " INTEGER NOT NULL DEFAULT 0"
const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL, trigger TEXT NOT NULL, dry_run INTEGER NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
  pid INTEGER)SQL" DINGBRIDGE_RUN_COUNTERS(DINGBRIDGE_COUNTER_COLUMN) R"SQL(
);
CREATE TABLE IF NOT EXISTS run_items (
  run_id INTEGER NOT NULL, phase TEXT NOT NULL, object_type TEXT NOT NULL, external_id TEXT NOT NULL,
  operation TEXT NOT NULL, error TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_items_run ON run_items(run_id);
)SQL";
#undef DINGBRIDGE_COUNTER_COLUMN

std::string iso_time(std::chrono::system_clock::time_point t) {
    std::time_t s = std::chrono::system_clock::to_time_t(t);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

std::string now_iso() { return iso_time(std::chrono::system_clock::now()); }

// "departments_fetched, users_fetched, ...": the counter columns in order.
std::string counter_columns() {
    std::string s;
    for (const char* name : kRunCounterNames) s += (s.empty() ? "" : ", ") + std::string(name);
    return s;
}

// Binds every counter from parameter `first` on, in column order.
void bind_counters(Stmt& st, int first, const RunCounters& c) {
    int i = first;
    for_each_counter(c, [&](const char*, std::int64_t v) { st.bind(i++, v); });
}

// "name=?first, name=?first+1, ...": the counters as SET assignments.
std::string counter_assignments(int first) {
    std::string s;
    int i = first;
    for (const char* name : kRunCounterNames)
        s += (s.empty() ? "" : ", ") + std::string(name) + "=?" + std::to_string(i++);
    return s;
}

// One `runs` row selected as: id, kind, trigger, dry_run, started_at, finished_at, status,
// message, then the counter columns.
RunRecord read_run_row(Stmt& st) {
    RunRecord r;
    st.columns(r.id, r.kind, r.trigger, r.dry_run, r.started_at, r.finished_at, r.status, r.message);
    int col = 8;
    for_each_counter(r.counters, [&](const char*, std::int64_t& v) { v = st.integer(col++); });
    return r;
}

const std::string& schema() {
    static const std::string all = std::string(kSchema) + kApiCallsSchema;
    return all;
}

}  // namespace

bool run_process_gone(std::int64_t pid) {
    return pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH);
}

HistoryStore::HistoryStore(const std::string& path) {
    // journal_mode=WAL: readers then wait instead of failing.
    db_ = sqlite_util::open_database(
        path, {"the state database", "the history schema", 10000, {"PRAGMA journal_mode=WAL"}, schema().c_str()});
    // Close runs whose process is gone.
    Stmt st(db_, "SELECT id, pid FROM runs WHERE status='running'");
    std::vector<std::int64_t> dead;
    while (st.ok() && st.step() == SQLITE_ROW)
        if (run_process_gone(st.integer(1))) dead.push_back(st.integer(0));
    for (auto id : dead) {
        // Closed and its calls counted in one transaction: a second open finds it closed.
        (void)sqlite_util::exec(db_, "BEGIN IMMEDIATE");
        Stmt up(db_, "UPDATE runs SET status='failed', finished_at=?2, message=?3 WHERE id=?1 AND status='running'");
        up.bind(1, id).bind(2, now_iso()).bind(3, std::string(kAbandonedRunMessage));
        Status r = up.run();
        if (r && sqlite3_changes(db_) == 1) {
            Stmt count(db_,
                       "INSERT INTO api_calls(month, kind, calls) SELECT substr(started_at, 1, 7), kind, requests "
                       "FROM runs WHERE id=?1 AND requests > 0 "
                       "ON CONFLICT(month, kind) DO UPDATE SET calls=calls+excluded.calls");
            count.bind(1, id);
            r = count.run();
        }
        (void)sqlite_util::exec(db_, r ? "COMMIT" : "ROLLBACK");
        if (!r) spdlog::warn("cannot close the abandoned run {}: {}", id, r.error());
    }
}

HistoryStore::~HistoryStore() {
    if (db_) sqlite3_close(db_);
}

Result<std::int64_t> HistoryStore::prune(std::chrono::seconds keep) {
    const std::string cutoff_iso = iso_time(std::chrono::system_clock::now() - keep);
    constexpr const char* kOld =
        "status <> 'running' AND finished_at IS NOT NULL AND finished_at < ?1 AND id NOT IN "
        "(SELECT id FROM runs WHERE kind='full' AND dry_run=0 AND status IN ('succeeded','partial') "
        "ORDER BY id DESC LIMIT 1)";  // not MAX(id): NOT IN (NULL) would keep every run
    if (auto r = sqlite_util::exec(db_, "BEGIN IMMEDIATE"); !r) return fail(r.error());
    Stmt items(db_,
               (std::string("DELETE FROM run_items WHERE run_id IN (SELECT id FROM runs WHERE ") + kOld + ")").c_str());
    items.bind(1, cutoff_iso);
    Status r = items.run();
    std::int64_t gone = 0;
    if (r) {
        Stmt runs(db_, (std::string("DELETE FROM runs WHERE ") + kOld).c_str());
        runs.bind(1, cutoff_iso);
        r = runs.run();
        gone = sqlite3_changes(db_);
    }
    (void)sqlite_util::exec(db_, r ? "COMMIT" : "ROLLBACK");
    if (!r) return fail(r.error());
    return gone;
}

Result<std::int64_t> HistoryStore::start_run(const std::string& kind, const std::string& trigger, bool dry_run) {
    Stmt st(db_, "INSERT INTO runs(kind, trigger, dry_run, started_at, status, pid) VALUES(?1,?2,?3,?4,'running',?5)");
    if (st.ok())
        st.bind(1, kind)
            .bind(2, trigger)
            .bind(3, static_cast<std::int64_t>(dry_run))
            .bind(4, now_iso())
            .bind(5, static_cast<std::int64_t>(getpid()));
    if (auto r = st.run(); !r) return fail(r.error());
    if (sqlite3_changes(db_) != 1) return fail("the run row was not inserted");
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_));
}

Status HistoryStore::update_progress(std::int64_t id, const RunCounters& c) {
    std::string sql = "UPDATE runs SET " + counter_assignments(2) + " WHERE id=?1";
    Stmt st(db_, sql.c_str());
    if (st.ok()) {
        st.bind(1, id);
        bind_counters(st, 2, c);
    }
    return st.run();
}

Status HistoryStore::add_item(std::int64_t id, const RunItem& item) {
    Stmt st(db_,
            "INSERT INTO run_items(run_id, phase, object_type, external_id, operation, error, created_at) "
            "VALUES(?1,?2,?3,?4,?5,?6,?7)");
    if (st.ok())
        st.bind(1, id)
            .bind(2, item.phase)
            .bind(3, item.object_type)
            .bind(4, item.external_id)
            .bind(5, item.operation)
            .bind(6, item.error)
            .bind(7, now_iso());
    return st.run();
}

Status HistoryStore::finish_run(std::int64_t id, const std::string& status, const std::string& message,
                                const RunCounters& c) {
    // One statement: counters and status together.
    std::string sql =
        "UPDATE runs SET status=?2, message=?3, finished_at=?4, " + counter_assignments(5) + " WHERE id=?1";
    Stmt st(db_, sql.c_str());
    if (st.ok()) {
        st.bind(1, id).bind(2, status).bind(3, message).bind(4, now_iso());
        bind_counters(st, 5, c);
    }
    return st.run();
}

std::vector<RunRecord> HistoryStore::list(int limit) {
    std::vector<RunRecord> out;
    std::string sql = std::string("SELECT id, kind, trigger, dry_run, started_at, finished_at, status, message, ") +
                      counter_columns() + " FROM runs ORDER BY id DESC LIMIT ?1";
    Stmt st(db_, sql.c_str());
    st.bind(1, static_cast<std::int64_t>(limit));
    while (st.ok() && st.step() == SQLITE_ROW) {
        out.push_back(read_run_row(st));
    }
    return out;
}

std::optional<RunRecord> HistoryStore::get(std::int64_t id) {
    std::string sql = std::string("SELECT id, kind, trigger, dry_run, started_at, finished_at, status, message, ") +
                      counter_columns() + " FROM runs WHERE id=?1";
    Stmt st(db_, sql.c_str());
    st.bind(1, id);
    if (!st.ok() || st.step() != SQLITE_ROW) return std::nullopt;
    RunRecord r = read_run_row(st);
    Stmt items(db_,
               "SELECT phase, object_type, external_id, operation, error, created_at FROM run_items WHERE "
               "run_id=?1 ORDER BY rowid");
    items.bind(1, id);
    while (items.ok() && items.step() == SQLITE_ROW)
        r.items.push_back(
            RunItem{items.text(0), items.text(1), items.text(2), items.text(3), items.text(4), items.text(5)});
    return r;
}

std::string run_to_json(const RunRecord& r, bool with_items) {
    std::string s = "{\"id\":" + std::to_string(r.id) + ",\"kind\":\"" + json_escape(r.kind) + "\",\"trigger\":\"" +
                    json_escape(r.trigger) + "\",\"dry_run\":" + (r.dry_run ? "true" : "false") + ",\"started_at\":\"" +
                    json_escape(r.started_at) + "\",\"finished_at\":" +
                    (r.finished_at.empty() ? std::string("null") : "\"" + json_escape(r.finished_at) + "\"") +
                    ",\"status\":\"" + json_escape(r.status) + "\",\"message\":\"" + json_escape(r.message) +
                    "\",\"counts\":{";
    bool first = true;
    for_each_counter(r.counters, [&](const char* name, std::int64_t v) {
        s += (first ? "\"" : ",\"") + std::string(name) + "\":" + std::to_string(v);
        first = false;
    });
    s += "}";
    if (with_items) {
        s += ",\"items\":[";
        for (size_t i = 0; i < r.items.size(); ++i) {
            const auto& it = r.items[i];
            s += (i ? "," : "") + std::string("{\"phase\":\"") + json_escape(it.phase) + "\",\"object_type\":\"" +
                 json_escape(it.object_type) + "\",\"external_id\":\"" + json_escape(it.external_id) +
                 "\",\"operation\":\"" + json_escape(it.operation) + "\",\"error\":\"" + json_escape(it.error) +
                 "\",\"at\":\"" + json_escape(it.at) + "\"}";
        }
        s += "]";
    }
    return s + "}";
}

}  // namespace dingbridge::agent
