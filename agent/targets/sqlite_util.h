#pragma once
// RAII prepared statement over sqlite3 with typed binds and column reads, plus tiny JSON
// encoders/decoders for the list/map columns. Used by the SQLite target and the history store.
// A Stmt belongs to the thread that owns its connection.

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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
    Stmt& bind(int i, const std::string& v);
    Stmt& bind_nullable(int i, const std::string& v);  // "" -> NULL
    Stmt& bind(int i, std::int64_t v);
    Stmt& bind_null(int i);
    // SQLITE_ROW, SQLITE_DONE or an error code.
    int step();
    // One step of a statement that returns no rows (or whose first row is ignored): ok on
    // SQLITE_DONE/SQLITE_ROW, else SQLite's message (or the prepare error).
    Status run();
    void reset();
    std::string text(int col) const;
    std::int64_t integer(int col) const;
    bool is_null(int col) const;
    sqlite3_stmt* raw() { return stmt_; }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string error_;
};

namespace sqlite_util {
// sqlite3_exec of one or more statements without results.
Status exec(sqlite3* db, const std::string& sql);
}  // namespace sqlite_util

std::string json_string_list(const std::vector<std::string>& items);
std::string json_string_map(const std::map<std::string, std::string>& items);
std::vector<std::string> parse_json_string_list(const std::string& text);
std::map<std::string, std::string> parse_json_string_map(const std::string& text);

}  // namespace dingbridge::agent
