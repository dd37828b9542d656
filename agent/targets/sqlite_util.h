#pragma once
// RAII prepared statement over sqlite3 with typed binds and column reads, plus tiny JSON
// encoders/decoders for the list/map columns. Used by the SQLite target and the history store.
// A Stmt belongs to the thread that owns its connection.

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agent/org/schema.h"
#include "shared/result.h"

namespace dingbridge::agent {

class Stmt {
public:
    Stmt(sqlite3* db, const char* sql);
    ~Stmt();
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    bool ok() const { return stmt_ != nullptr; }
    const std::string& prepare_error() const { return error_; }
    // Texts are copied by SQLite (SQLITE_TRANSIENT), so a view of a temporary is fine; taking a
    // view lets SmallString fields bind without a std::string made for each.
    Stmt& bind(int i, std::string_view v);
    Stmt& bind_nullable(int i, std::string_view v);  // "" -> NULL
    Stmt& bind(int i, std::int64_t v);
    Stmt& bind_null(int i);
    // A text bound as NULL when empty, for bind_all: `st.bind_all(id, Stmt::or_null(email))`.
    struct Nullable {
        std::string_view text;
    };
    static Nullable or_null(std::string_view v) { return Nullable{v}; }
    Stmt& bind(int i, Nullable v) { return bind_nullable(i, v.text); }
    // Binds the arguments to ?1, ?2, ... in order (a bool as 0/1).
    template <class... Args>
    Stmt& bind_all(const Args&... args) {
        int i = 0;
        (bind(++i, args), ...);
        return *this;
    }
    // SQLITE_ROW, SQLITE_DONE or an error code.
    int step();
    // One step of a statement that returns no rows (or whose first row is ignored): ok on
    // SQLITE_DONE/SQLITE_ROW, else SQLite's message (or the prepare error).
    Status run();
    // Steps through every row of a query, calling on_row() on each (read it from this Stmt): ok
    // once the rows end, else SQLite's message or the prepare error (a read cut short is an
    // error, not fewer rows).
    template <class F>
    Status each_row(F&& on_row) {
        if (!stmt_) return fail(error_);
        int rc = SQLITE_ROW;
        while ((rc = step()) == SQLITE_ROW) on_row();
        return rc == SQLITE_DONE ? Status{} : fail(sqlite3_errmsg(db_));
    }
    void reset();
    std::string text(int col) const;
    // Without a copy: valid until the next step or reset (or another read of this column as a
    // different type).
    std::string_view text_view(int col) const;
    std::int64_t integer(int col) const;
    bool is_null(int col) const;
    // Reads columns 0, 1, ... of the current row into the arguments by their type: text (NULL as
    // ""), integer, bool (non-zero), a JSON list or map of strings (json_string_list/_map).
    template <class... Out>
    void columns(Out&... out) const {
        int i = 0;
        (column(i++, out), ...);
    }
    sqlite3_stmt* raw() { return stmt_; }

private:
    void column(int col, std::string& out) const { out = text(col); }
    void column(int col, SmallString& out) const { out = text_view(col); }
    void column(int col, std::int64_t& out) const { out = integer(col); }
    void column(int col, int& out) const { out = static_cast<int>(integer(col)); }
    void column(int col, bool& out) const { out = integer(col) != 0; }
    void column(int col, std::vector<std::string>& out) const;
    void column(int col, std::map<std::string, std::string>& out) const;
    void column(int col, CustomFields& out) const {
        std::map<std::string, std::string> m;
        column(col, m);
        out = std::move(m);
    }
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string error_;
};

namespace sqlite_util {
// sqlite3_exec of one or more statements without results.
Status exec(sqlite3* db, const std::string& sql);

// How open_database prepares a database file. `what` names it in errors ("the state database"),
// `schema_what` its tables ("the history schema").
struct DatabaseSpec {
    const char* what;
    const char* schema_what;
    int busy_timeout_ms;
    std::vector<const char*> pragmas;  // best effort: a failed PRAGMA keeps SQLite's default
    const char* schema;                // CREATE ... IF NOT EXISTS statements
};

// Opens (creating) the database at `path` for the calling thread (SQLITE_OPEN_NOMUTEX), sets the
// busy timeout, applies the PRAGMAs and creates the schema; the caller closes the handle.
// Startup only: throws std::runtime_error "cannot open <what> <path>: ..." or
// "cannot create <schema_what> in <path>: ...".
sqlite3* open_database(const std::string& path, const DatabaseSpec& spec);
}  // namespace sqlite_util

std::string json_string_list(const std::vector<std::string>& items);
std::string json_string_map(const std::map<std::string, std::string>& items);
std::vector<std::string> parse_json_string_list(const std::string& text);
std::map<std::string, std::string> parse_json_string_map(const std::string& text);

}  // namespace dingbridge::agent
