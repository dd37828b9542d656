#pragma once
// SqliteTarget: the embedded identity directory, one SQLite file queryable with `sqlite3`
// (tables documented in docs/agent.md: departments, users, user_departments). A run is one
// transaction (BEGIN IMMEDIATE ... COMMIT): a crash or SIGKILL leaves the previous state. Each
// change runs inside its own SAVEPOINT so that one bad item is rolled back alone (apply_batch
// shares one SAVEPOINT between changes while none fails). Empty unique
// values (username, email, phone) are stored as NULL so that only real duplicates collide.

#include <map>
#include <memory>
#include <string>

#include "agent/targets/target.h"

struct sqlite3;

namespace dingbridge::agent {

class Stmt;

class SqliteTarget : public Target {
public:
    // Opens (and creates the schema of) the database; throws std::runtime_error on failure.
    explicit SqliteTarget(const std::string& path);
    ~SqliteTarget() override;

    std::optional<OrgSnapshot> read(std::string& error) override;
    bool begin(std::string& error) override;
    std::optional<std::string> apply(const Change& change) override;
    // One SAVEPOINT around the whole batch; if any change fails, the batch is rolled back and
    // replayed one change per SAVEPOINT, so the outcome is that of apply() on each.
    void apply_batch(const Change* changes, std::size_t n, std::vector<std::optional<std::string>>& errors) override;
    bool commit(std::string& error) override;
    void rollback() override;

private:
    std::optional<std::string> apply_inner(const Change& change);
    // Prepared once per connection, reset before each use (keyed by the SQL literal's address).
    Stmt& cached(const char* sql);
    sqlite3* db_ = nullptr;
    std::map<const char*, std::unique_ptr<Stmt>> statements_;
};

// Small SQLite helpers shared with the history store.
namespace sqlite_util {
std::string exec(sqlite3* db, const std::string& sql);  // returns an error or ""
}

}  // namespace dingbridge::agent
