#pragma once
// SqliteTarget: the embedded identity directory, one SQLite file queryable with `sqlite3`
// (tables documented in docs/agent.md: departments, users, user_departments). A run is one
// transaction (BEGIN IMMEDIATE ... COMMIT): a crash or SIGKILL leaves the previous state. Each
// change runs inside its own SAVEPOINT so that one bad item is rolled back alone (apply_batch
// shares one SAVEPOINT between changes while none fails). A run into an empty users table (a
// first sync) drops the unique indexes and the department index of the memberships, and builds
// them at the end of the same transaction. Empty unique values (username, email, phone) are
// stored as NULL so that only real duplicates collide.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
    std::size_t apply_batch_size() const override { return 128; }  // one SAVEPOINT while none fails
    // A run into an empty users table builds the unique indexes here (see begin()); a user that
    // would have collided is removed again and its changes returned as failed.
    std::vector<std::pair<const Change*, std::string>> finish_batches() override;
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
    // Bulk mode: records a user write that went through (for finish_batches).
    void note_put(const Change& change);
    // Removes every user whose `column` value a user written earlier in this run holds, and adds
    // its changes to `failed` with SQLite's error for that column.
    Status drop_later_duplicates(const std::string& column, std::vector<std::pair<const Change*, std::string>>& failed);
    // True when `query` (SELECT 1 FROM <table> LIMIT 1) returns no row.
    bool table_empty(const char* query);
    sqlite3* db_ = nullptr;
    bool named_unique_indexes_ = false;     // false: a database with the older UNIQUE columns
    bool bulk_ = false;                     // this run's unique indexes are dropped until finish_batches()
    bool no_memberships_before_ = false;    // bulk: user_departments was empty at begin()
    std::vector<const Change*> bulk_puts_;  // user writes of this run, in order (bulk only)
    std::string bulk_error_;                // the unique indexes could not be rebuilt: commit fails
    std::map<const char*, std::unique_ptr<Stmt>> statements_;
};

}  // namespace dingbridge::agent
