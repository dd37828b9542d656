#include "agent/targets/sqlite_util.h"

#include <simdjson.h>

#include <stdexcept>

#include "shared/log.h"

namespace dingbridge::agent {

Stmt::Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
        error_ = sqlite3_errmsg(db);
        stmt_ = nullptr;
    }
}

Stmt::~Stmt() {
    if (stmt_) sqlite3_finalize(stmt_);
}

Stmt& Stmt::bind(int i, std::string_view v) {
    // A null pointer would bind NULL; an empty text stays an empty text, as with std::string.
    sqlite3_bind_text(stmt_, i, v.data() != nullptr ? v.data() : "", static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
}

Stmt& Stmt::bind_nullable(int i, std::string_view v) {
    if (v.empty())
        sqlite3_bind_null(stmt_, i);
    else
        bind(i, v);
    return *this;
}

Stmt& Stmt::bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
}

Stmt& Stmt::bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
}

int Stmt::step() { return sqlite3_step(stmt_); }

Status Stmt::run() {
    if (!stmt_) return fail(error_);
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return fail(sqlite3_errmsg(db_));
    return {};
}

namespace sqlite_util {
Status exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string e = err ? err : "unknown error";
        sqlite3_free(err);
        return fail(std::move(e));
    }
    return {};
}

sqlite3* open_database(const std::string& path, const DatabaseSpec& spec) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
        std::string e = db ? sqlite3_errmsg(db) : "out of memory";
        sqlite3_close(db);
        throw std::runtime_error(std::string("cannot open ") + spec.what + " " + path + ": " + e);
    }
    sqlite3_busy_timeout(db, spec.busy_timeout_ms);
    for (const char* pragma : spec.pragmas) (void)exec(db, pragma);  // best effort (DatabaseSpec)
    if (auto r = exec(db, spec.schema); !r) {
        sqlite3_close(db);
        throw std::runtime_error(std::string("cannot create ") + spec.schema_what + " in " + path + ": " + r.error());
    }
    return db;
}
}  // namespace sqlite_util

void Stmt::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::string Stmt::text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    if (!t) return {};
    return std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

std::string_view Stmt::text_view(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    if (!t) return {};
    return {reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

std::int64_t Stmt::integer(int col) const { return sqlite3_column_int64(stmt_, col); }
bool Stmt::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
void Stmt::column(int col, std::vector<std::string>& out) const { out = parse_json_string_list(text(col)); }
void Stmt::column(int col, std::map<std::string, std::string>& out) const { out = parse_json_string_map(text(col)); }

std::string json_string_list(const std::vector<std::string>& items) {
    std::string s = "[";
    for (size_t i = 0; i < items.size(); ++i) s += (i ? ",\"" : "\"") + json_escape(items[i]) + "\"";
    return s + "]";
}

std::string json_string_map(const std::map<std::string, std::string>& items) {
    std::string s = "{";
    bool first = true;
    for (const auto& [k, v] : items) {
        s += (first ? "\"" : ",\"") + json_escape(k) + "\":\"" + json_escape(v) + "\"";
        first = false;
    }
    return s + "}";
}

std::vector<std::string> parse_json_string_list(const std::string& text) {
    std::vector<std::string> out;
    if (text.empty()) return out;
    simdjson::dom::parser p;
    simdjson::dom::array a;
    if (p.parse(text).get(a) != simdjson::SUCCESS) return out;
    for (auto e : a) {
        std::string_view s;
        if (e.get(s) == simdjson::SUCCESS) out.emplace_back(s);
    }
    return out;
}

std::map<std::string, std::string> parse_json_string_map(const std::string& text) {
    std::map<std::string, std::string> out;
    if (text.empty()) return out;
    simdjson::dom::parser p;
    simdjson::dom::object o;
    if (p.parse(text).get(o) != simdjson::SUCCESS) return out;
    for (auto [k, v] : o) {
        std::string_view s;
        if (v.get(s) == simdjson::SUCCESS) out.emplace(std::string(k), std::string(s));
    }
    return out;
}

}  // namespace dingbridge::agent
