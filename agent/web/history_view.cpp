#include "agent/web/history_view.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string_view>

#include "agent/targets/sqlite_util.h"

namespace dingbridge::agent::web {

namespace {

sqlite3* open_read_only(const std::string& path, std::string& error) {
    sqlite3* db = nullptr;
    // No SQLITE_OPEN_CREATE: a missing database is reported, never created by the console.
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        error = "cannot open " + path + " read-only: " + (db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return nullptr;
    }
    sqlite3_busy_timeout(db, 2000);
    return db;
}

// A `runs` row read by column name (SELECT *), so the console follows the schema without a
// second copy of HistoryStore's column list.
void set_field(RunRecord& r, const char* name, sqlite3_stmt* st, int col) {
    auto text = [&] {
        auto* t = sqlite3_column_text(st, col);
        return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    const std::int64_t v = sqlite3_column_int64(st, col);
    static const std::map<std::string, std::int64_t RunCounters::*> counters = {
        {"departments_fetched", &RunCounters::departments_fetched},
        {"users_fetched", &RunCounters::users_fetched},
        {"requests", &RunCounters::requests},
        {"retries", &RunCounters::retries},
        {"throttled", &RunCounters::throttled},
        {"changes_planned", &RunCounters::changes_planned},
        {"changes_applied", &RunCounters::changes_applied},
        {"items_failed", &RunCounters::items_failed},
        {"items_skipped", &RunCounters::items_skipped},
        {"create_department", &RunCounters::create_department},
        {"update_department", &RunCounters::update_department},
        {"delete_department", &RunCounters::delete_department},
        {"create_user", &RunCounters::create_user},
        {"update_user", &RunCounters::update_user},
        {"disable_user", &RunCounters::disable_user},
        {"delete_user", &RunCounters::delete_user}};
    const std::string n = name;
    if (n == "id")
        r.id = v;
    else if (n == "kind")
        r.kind = text();
    else if (n == "trigger")
        r.trigger = text();
    else if (n == "dry_run")
        r.dry_run = v != 0;
    else if (n == "started_at")
        r.started_at = text();
    else if (n == "finished_at")
        r.finished_at = text();
    else if (n == "status")
        r.status = text();
    else if (n == "message")
        r.message = text();
    else if (auto it = counters.find(n); it != counters.end())
        r.counters.*(it->second) = v;
}

RunRecord read_run(Stmt& st) {
    RunRecord r;
    std::int64_t pid = 0;
    const int n = sqlite3_column_count(st.raw());
    for (int i = 0; i < n; ++i) {
        const char* name = sqlite3_column_name(st.raw(), i);
        if (std::strcmp(name, "pid") == 0) pid = sqlite3_column_int64(st.raw(), i);
        set_field(r, name, st.raw(), i);
    }
    // The console only reads: a run whose process is gone is shown as the next start of the
    // agent will close it, not as running until then.
    if (r.status == "running" && run_process_gone(pid)) {
        r.status = "failed";
        r.message = kAbandonedRunMessage;
    }
    return r;
}

std::vector<RunItem> read_items(sqlite3* db, std::int64_t run_id) {
    std::vector<RunItem> out;
    Stmt st(db,
            "SELECT phase, object_type, external_id, operation, error, created_at FROM run_items "
            "WHERE run_id=?1 ORDER BY rowid");
    st.bind(1, run_id);
    while (st.ok() && st.step() == SQLITE_ROW) {
        RunItem it;
        std::string* fields[] = {&it.phase, &it.object_type, &it.external_id, &it.operation, &it.error, &it.at};
        for (int i = 0; i < 6; ++i) *fields[i] = st.text(i);
        out.push_back(std::move(it));
    }
    return out;
}

}  // namespace

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "errcode N[ sub_code S]: MSG[ (request id ...]" starting at `at`: N and MSG, or false.
bool split_errcode(std::string_view text, std::size_t at, std::string& errcode, std::string& errmsg) {
    std::size_t i = at + std::strlen("errcode ");
    const std::size_t digits = i + (i < text.size() && text[i] == '-' ? 1 : 0);
    std::size_t end = digits;
    while (end < text.size() && is_digit(text[end])) ++end;
    if (end == digits) return false;
    i = end;
    constexpr std::string_view kSubCode = " sub_code ";
    if (text.substr(i, kSubCode.size()) == kSubCode) {
        // The sub code runs to the next space and ends in the ':' of ": ".
        const std::size_t from = i + kSubCode.size();
        std::size_t space = from;
        while (space < text.size() && !is_space(text[space])) ++space;
        if (space - from >= 2 && text[space - 1] == ':' && space < text.size() && text[space] == ' ') i = space - 1;
    }
    if (text.substr(i, 2) != ": ") return false;
    errcode = std::string(text.substr(at + std::strlen("errcode "), end - at - std::strlen("errcode ")));
    const std::size_t msg = i + 2;
    const std::size_t rid = text.find(" (request id", msg);
    errmsg = std::string(text.substr(msg, rid == std::string_view::npos ? std::string_view::npos : rid - msg));
    return true;
}

}  // namespace

// Plain scans, linear in the text: the error comes from DingTalk (or a directory server) and
// may be of any length; std::regex recursed once per character and overflowed the stack on
// errors of about 70,000 bytes, which took the console down on every view of that run.
ItemError parse_item_error(const RunItem& item) {
    ItemError e{item, {}, {}, {}, {}};
    const std::string_view text = item.error;
    // "API: ...": the API is the leading "/..." up to the first ':' without whitespace in it.
    if (!text.empty() && text[0] == '/') {
        std::size_t i = 1;
        while (i < text.size() && text[i] != ':' && !is_space(text[i])) ++i;
        if (i < text.size() && text[i] == ':') e.api = std::string(text.substr(0, i));
    }
    if (e.api.empty() && !item.operation.empty() && item.operation[0] == '/') e.api = item.operation;
    for (std::size_t at = text.find("errcode "); at != std::string_view::npos; at = text.find("errcode ", at + 1))
        if (split_errcode(text, at, e.errcode, e.errmsg)) break;
    // "... (request id R)" at the very end (trailing whitespace aside).
    std::size_t end = text.size();
    while (end > 0 && is_space(text[end - 1])) --end;
    constexpr std::string_view kRid = "(request id ";
    if (end > 0 && text[end - 1] == ')') {
        const std::size_t open = text.rfind(kRid, end - 1);
        if (open != std::string_view::npos) {
            const std::string_view id = text.substr(open + kRid.size(), end - 1 - open - kRid.size());
            const bool plain =
                !id.empty() && std::none_of(id.begin(), id.end(), [](char c) { return c == ')' || is_space(c); });
            if (plain && id != "none") e.request_id = std::string(id);
        }
    }
    return e;
}

std::int64_t iso_to_ms(const std::string& iso) {
    std::tm tm{};
    int ms = 0;
    if (iso.size() < 19 || std::sscanf(iso.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                       &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

HistoryView::HistoryView(const std::string& state_db) { db_ = open_read_only(state_db, error_); }

HistoryView::~HistoryView() {
    if (db_) sqlite3_close(db_);
}

bool HistoryView::has_table(const char* name) {
    Stmt st(db_, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1");
    st.bind(1, name);
    return st.ok() && st.step() == SQLITE_ROW;
}

std::vector<RunRecord> HistoryView::runs(int limit) {
    std::vector<RunRecord> out;
    if (!db_ || !has_table("runs")) return out;
    Stmt st(db_, "SELECT * FROM runs ORDER BY id DESC LIMIT ?1");
    st.bind(1, static_cast<std::int64_t>(limit));
    while (st.ok() && st.step() == SQLITE_ROW) out.push_back(read_run(st));
    return out;
}

std::optional<RunRecord> HistoryView::run(std::int64_t id) {
    if (!db_ || !has_table("runs")) return std::nullopt;
    Stmt st(db_, "SELECT * FROM runs WHERE id=?1");
    st.bind(1, id);
    if (!st.ok() || st.step() != SQLITE_ROW) return std::nullopt;
    RunRecord r = read_run(st);
    r.items = read_items(db_, id);
    return r;
}

std::optional<RunRecord> HistoryView::last_full() {
    if (!db_ || !has_table("runs")) return std::nullopt;
    Stmt st(db_,
            "SELECT * FROM runs WHERE kind='full' AND dry_run=0 AND status IN ('succeeded','partial') "
            "ORDER BY id DESC LIMIT 1");
    if (!st.ok() || st.step() != SQLITE_ROW) return std::nullopt;
    return read_run(st);
}

std::int64_t HistoryView::calls_in_month(const std::string& month) {
    if (!db_ || !has_table("api_calls")) return 0;
    Stmt st(db_, "SELECT COALESCE(SUM(calls),0) FROM api_calls WHERE month=?1");
    st.bind(1, month);
    return st.ok() && st.step() == SQLITE_ROW ? st.integer(0) : 0;
}

std::optional<std::string> HistoryView::state(const std::string& key) {
    if (!db_ || !has_table("agent_state")) return std::nullopt;
    Stmt st(db_, "SELECT value FROM agent_state WHERE key=?1");
    st.bind(1, key);
    if (!st.ok() || st.step() != SQLITE_ROW) return std::nullopt;
    return st.text(0);
}

EventState HistoryView::events() {
    EventState s;
    if (!db_ || !has_table("event_journal")) return s;
    Stmt st(db_,
            "SELECT SUM(status='pending'), SUM(status='failed'), MIN(CASE WHEN status='pending' THEN "
            "received_ms END), MAX(received_ms) FROM event_journal");
    if (st.ok() && st.step() == SQLITE_ROW) {
        s.pending = st.integer(0);
        s.given_up = st.integer(1);
        s.oldest_pending_ms = st.integer(2);
        s.newest_received_ms = st.integer(3);
    }
    try {
        s.last_alive_ms = std::stoll(state("last_alive_ms").value_or("0"));
    } catch (...) {
        s.last_alive_ms = 0;
    }
    return s;
}

Totals HistoryView::totals() {
    Totals t;
    if (!db_ || !has_table("runs")) return t;
    Stmt st(db_, "SELECT kind, status, COUNT(*), SUM(items_failed) FROM runs GROUP BY kind, status");
    while (st.ok() && st.step() == SQLITE_ROW) {
        t.runs[{st.text(0), st.text(1)}] = st.integer(2);
        t.items_failed += st.integer(3);
        if (st.text(1) == "aborted") t.safeguard_aborts += st.integer(2);
    }
    Stmt running(db_, "SELECT kind, pid FROM runs WHERE status='running'");
    while (running.ok() && running.step() == SQLITE_ROW) {
        if (!run_process_gone(running.integer(1))) continue;
        const std::string kind = running.text(0);
        if (--t.runs[{kind, "running"}] <= 0) t.runs.erase({kind, "running"});
        ++t.runs[{kind, "failed"}];
    }
    Stmt last(db_, "SELECT MAX(finished_at) FROM runs WHERE status='succeeded'");
    if (last.ok() && last.step() == SQLITE_ROW) t.last_success = last.text(0);
    return t;
}

std::map<std::pair<std::string, std::string>, std::string> object_names(
    const std::string& target_db, const std::vector<std::pair<std::string, std::string>>& objects) {
    std::map<std::pair<std::string, std::string>, std::string> out;
    std::string error;
    if (objects.empty() || target_db.empty()) return out;
    sqlite3* db = open_read_only(target_db, error);
    if (!db) return out;
    {
        Stmt dept(db, "SELECT name FROM departments WHERE external_id=?1");
        Stmt user(db, "SELECT display_name FROM users WHERE external_id=?1");
        for (const auto& [type, id] : objects) {
            Stmt& st = type == "department" ? dept : user;
            if ((type != "department" && type != "user") || !st.ok()) continue;
            st.reset();
            st.bind(1, id);
            if (st.step() == SQLITE_ROW) out[{type, id}] = st.text(0);
        }
    }
    sqlite3_close(db);
    return out;
}

}  // namespace dingbridge::agent::web
