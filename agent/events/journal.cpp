#include "agent/events/journal.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "agent/sync/history.h"
#include "agent/targets/sqlite_target.h"
#include "agent/targets/sqlite_util.h"

namespace dingbridge::agent::events {

namespace {

const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS event_journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup_key TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL, event_type TEXT NOT NULL,
  user_ids TEXT NOT NULL DEFAULT '[]', dept_ids TEXT NOT NULL DEFAULT '[]',
  born_ms INTEGER NOT NULL DEFAULT 0, received_ms INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',
  run_id INTEGER, done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS event_journal_pending ON event_journal(status, id);
CREATE TABLE IF NOT EXISTS agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)SQL";

const std::string& schema() {
    static const std::string all = std::string(kSchema) + kApiCallsSchema;
    return all;
}

}  // namespace

void failpoint(const char* name) {
    static const char* armed = std::getenv("DINGBRIDGE_AGENT_FAILPOINT");
    if (armed && std::strcmp(armed, name) == 0) ::raise(SIGKILL);
}

Journal::Journal(const std::string& path) {
    // synchronous=FULL: a journaled event must survive a power loss before it is ACKed.
    db_ = sqlite_util::open_database(path, {"the state database",
                                            "the event journal",
                                            5000,
                                            {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"},
                                            schema().c_str()});
}

Journal::~Journal() {
    if (db_) sqlite3_close(db_);
}

RecordResult Journal::record(const JournalEvent& e, std::string& error) {
    Stmt st(db_,
            "INSERT INTO event_journal(dedup_key, source, event_type, user_ids, dept_ids, born_ms, received_ms) "
            "VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(dedup_key) DO NOTHING");
    if (!st.ok()) {
        error = st.prepare_error();
        return RecordResult::error;
    }
    st.bind(1, e.dedup_key)
        .bind(2, e.source)
        .bind(3, e.event_type)
        .bind(4, json_string_list(e.user_ids))
        .bind(5, json_string_list(e.dept_ids))
        .bind(6, e.born_ms)
        .bind(7, e.received_ms ? e.received_ms : now_ms());
    if (st.step() != SQLITE_DONE) {
        error = sqlite3_errmsg(db_);
        return RecordResult::error;
    }
    return sqlite3_changes(db_) > 0 ? RecordResult::inserted : RecordResult::duplicate;
}

std::vector<JournalEvent> Journal::pending(int limit) {
    std::vector<JournalEvent> out;
    Stmt st(db_,
            "SELECT id, dedup_key, source, event_type, user_ids, dept_ids, born_ms, received_ms, attempts "
            "FROM event_journal WHERE status='pending' AND (attempts=0 OR COALESCE(done_ms, 0) + "
            "min(?2 << min(2 * (attempts - 1), 20), ?3) <= ?4) ORDER BY id LIMIT ?1");
    st.bind(1, static_cast<std::int64_t>(limit)).bind(2, kRetryFirstMs).bind(3, kRetryMaxMs).bind(4, now_ms());
    while (st.ok() && st.step() == SQLITE_ROW) {
        JournalEvent e;
        st.columns(e.id, e.dedup_key, e.source, e.event_type, e.user_ids, e.dept_ids, e.born_ms, e.received_ms,
                   e.attempts);
        out.push_back(std::move(e));
    }
    return out;
}

std::int64_t Journal::pending_count() {
    Stmt st(db_, "SELECT COUNT(*) FROM event_journal WHERE status='pending'");
    return st.ok() && st.step() == SQLITE_ROW ? st.integer(0) : 0;
}

bool Journal::mark_done(const std::vector<std::int64_t>& ids, std::int64_t run_id) {
    if (ids.empty()) return true;
    if (!sqlite_util::exec(db_, "BEGIN IMMEDIATE")) return false;
    Stmt st(db_, "UPDATE event_journal SET status='done', run_id=?2, done_ms=?3 WHERE id=?1");
    bool ok = st.ok();
    for (auto id : ids) {
        if (!ok) break;
        st.reset();
        st.bind(1, id).bind(2, run_id).bind(3, now_ms());
        ok = st.step() == SQLITE_DONE;
    }
    if (!ok) {
        (void)sqlite_util::exec(db_, "ROLLBACK");
        return false;
    }
    return sqlite_util::exec(db_, "COMMIT").ok();
}

bool Journal::mark_attempt(const std::vector<std::int64_t>& ids, const std::string& error, int give_up_after) {
    if (ids.empty()) return true;
    if (!sqlite_util::exec(db_, "BEGIN IMMEDIATE")) return false;
    Stmt st(db_,
            "UPDATE event_journal SET attempts=attempts+1, error=?2, "
            "status=CASE WHEN attempts+1>=?3 THEN 'failed' ELSE status END, done_ms=?4 WHERE id=?1");
    bool ok = st.ok();
    for (auto id : ids) {
        if (!ok) break;
        st.reset();
        st.bind(1, id).bind(2, error).bind(3, static_cast<std::int64_t>(give_up_after)).bind(4, now_ms());
        ok = st.step() == SQLITE_DONE;
    }
    if (!ok) {
        (void)sqlite_util::exec(db_, "ROLLBACK");
        return false;
    }
    return sqlite_util::exec(db_, "COMMIT").ok();
}

bool Journal::mark_covered_by_full(std::int64_t received_before_ms, std::int64_t run_id,
                                   const std::set<std::string>& not_covered_users,
                                   const std::set<std::string>& not_covered_depts, bool none_covered) {
    if (none_covered) return true;
    if (not_covered_users.empty() && not_covered_depts.empty()) {
        Stmt st(db_,
                "UPDATE event_journal SET status='done', run_id=?2, done_ms=?3 WHERE status='pending' AND "
                "received_ms<?1");
        if (!st.ok()) return false;
        st.bind(1, received_before_ms).bind(2, run_id).bind(3, now_ms());
        return st.step() == SQLITE_DONE;
    }
    std::vector<std::int64_t> covered;
    {
        Stmt st(db_, "SELECT id, user_ids, dept_ids FROM event_journal WHERE status='pending' AND received_ms<?1");
        st.bind(1, received_before_ms);
        while (st.ok() && st.step() == SQLITE_ROW) {
            std::int64_t id = 0;
            std::vector<std::string> users, depts;
            st.columns(id, users, depts);
            const bool open =
                std::any_of(users.begin(), users.end(),
                            [&](const auto& u) { return not_covered_users.count(u) > 0; }) ||
                std::any_of(depts.begin(), depts.end(), [&](const auto& d) { return not_covered_depts.count(d) > 0; });
            if (!open) covered.push_back(id);
        }
        if (!st.ok()) return false;
    }
    return mark_done(covered, run_id);
}

std::int64_t Journal::newest_received_ms() {
    Stmt st(db_, "SELECT COALESCE(MAX(received_ms),0) FROM event_journal");
    return st.ok() && st.step() == SQLITE_ROW ? st.integer(0) : 0;
}

std::string Journal::month_of(std::int64_t unix_s) {
    std::time_t t = static_cast<std::time_t>(unix_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    return buf;
}

std::string Journal::this_month() { return month_of(static_cast<std::int64_t>(std::time(nullptr))); }

std::int64_t Journal::prune(std::int64_t before_ms) {
    Stmt st(db_, "DELETE FROM event_journal WHERE status IN ('done','failed') AND received_ms < ?1");
    st.bind(1, before_ms);
    return st.run() ? sqlite3_changes(db_) : 0;
}

Status Journal::add_calls(std::int64_t n, const std::string& kind) {
    if (n <= 0) return {};
    Stmt st(db_,
            "INSERT INTO api_calls(month, kind, calls) VALUES(?1,?2,?3) "
            "ON CONFLICT(month, kind) DO UPDATE SET calls=calls+excluded.calls");
    st.bind(1, this_month()).bind(2, kind).bind(3, n);
    auto r = st.run();
    if (!r) spdlog::warn("state database: {} DingTalk calls ({}) not counted: {}", n, kind, r.error());
    return r;
}

std::int64_t Journal::calls_in_month(const std::string& month, const std::string& kind) {
    Stmt st(db_, kind.empty() ? "SELECT COALESCE(SUM(calls),0) FROM api_calls WHERE month=?1"
                              : "SELECT COALESCE(SUM(calls),0) FROM api_calls WHERE month=?1 AND kind=?2");
    st.bind(1, month);
    if (!kind.empty()) st.bind(2, kind);
    return st.ok() && st.step() == SQLITE_ROW ? st.integer(0) : 0;
}

std::optional<std::string> Journal::get(const std::string& key) {
    Stmt st(db_, "SELECT value FROM agent_state WHERE key=?1");
    st.bind(1, key);
    if (st.ok() && st.step() == SQLITE_ROW) return st.text(0);
    return std::nullopt;
}

void Journal::set(const std::string& key, const std::string& value) {
    Stmt st(db_,
            "INSERT INTO agent_state(key, value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value");
    st.bind(1, key).bind(2, value);
    (void)st.step();
}

}  // namespace dingbridge::agent::events
