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

class SqliteTarget : public Target, private ChangeWriter {
public:
    // Opens (and creates the schema of) the database; throws std::runtime_error on failure.
    explicit SqliteTarget(const std::string& path);
    ~SqliteTarget() override;

    Result<OrgSnapshot> read() override;
    Result<OrgSnapshot> read_against(const OrgSnapshot& desired) override;
    Status begin() override;
    Status apply(const Change& change) override;
    // One SAVEPOINT around the whole batch; if any change fails, the batch is rolled back and
    // replayed one change per SAVEPOINT, so the outcome is that of apply() on each.
    void apply_batch(const Change* changes, std::size_t n, std::vector<Status>& outcomes) override;
    Status commit() override;
    void rollback() override;

private:
    Status read_departments(OrgSnapshot& s);
    Status read_users(OrgSnapshot& s, const OrgSnapshot* desired);
    Result<OrgSnapshot> read_all(const OrgSnapshot* desired);
    Status put_department(const OrgDepartment& d) override;
    Status put_user(const OrgUser& u) override;
    Status disable_user(const std::string& external_id, const OrgUser* kept) override;
    Status delete_user(const std::string& external_id) override;
    Status delete_department(const std::string& external_id) override;
    // Runs a cached one-parameter statement (`sql` a literal) with ?1 = external_id.
    Status delete_rows(const char* sql, const std::string& external_id);
    // Prepared once per connection, reset before each use (keyed by the SQL literal's address).
    Stmt& cached(const char* sql);
    sqlite3* db_ = nullptr;
    std::map<const char*, std::unique_ptr<Stmt>> statements_;
};

}  // namespace dingbridge::agent
