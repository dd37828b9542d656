#include "agent/targets/sqlite_target.h"

#include <ctime>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "agent/targets/sqlite_util.h"

namespace dingbridge::agent {

namespace {

const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS departments (
  external_id        TEXT PRIMARY KEY,
  name               TEXT NOT NULL,
  parent_external_id TEXT,
  sort_order         INTEGER NOT NULL DEFAULT 0,
  description        TEXT NOT NULL DEFAULT '',
  leaders            TEXT NOT NULL DEFAULT '[]',
  custom             TEXT NOT NULL DEFAULT '{}',
  updated_at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS departments_parent ON departments(parent_external_id);
CREATE TABLE IF NOT EXISTS users (
  external_id        TEXT PRIMARY KEY,
  union_id           TEXT NOT NULL DEFAULT '',
  username           TEXT,
  display_name       TEXT NOT NULL DEFAULT '',
  email              TEXT,
  phone              TEXT,
  employee_number    TEXT NOT NULL DEFAULT '',
  title              TEXT NOT NULL DEFAULT '',
  primary_department TEXT,
  manager            TEXT,
  active             INTEGER NOT NULL DEFAULT 1,
  avatar_url         TEXT NOT NULL DEFAULT '',
  hired_at           TEXT NOT NULL DEFAULT '',
  custom             TEXT NOT NULL DEFAULT '{}',
  removed_at         INTEGER,
  updated_at         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_departments (
  user_external_id       TEXT NOT NULL,
  department_external_id TEXT NOT NULL,
  position               INTEGER NOT NULL,
  sort_order             INTEGER NOT NULL DEFAULT 0,
  is_leader              INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_external_id, department_external_id)
);
CREATE INDEX IF NOT EXISTS user_departments_dept ON user_departments(department_external_id);
)SQL";

// The users' unique values, as named indexes so that a first sync can drop them and build them
// once at the end (SqliteTarget::begin). A database created before they were named carries the
// same constraints as UNIQUE columns (sqlite_autoindex_users_N, which cannot be dropped): it
// keeps them and is written row by row.
constexpr const char* kUniqueColumns[] = {"username", "email", "phone"};

std::string create_unique_index(const std::string& column) {
    return "CREATE UNIQUE INDEX IF NOT EXISTS users_" + column + " ON users(" + column + ")";
}

// Rows that share a value of `column`: external_id, value.
std::string rows_sharing(const std::string& column) {
    return "SELECT external_id, " + column + " FROM users WHERE " + column + " IN (SELECT " + column +
           " FROM users WHERE " + column + " IS NOT NULL GROUP BY " + column + " HAVING count(*) > 1)";
}

// Memberships by department: dropped with the unique indexes, built again before the first
// department removal of the run (which looks memberships up by department) or at its end.
constexpr const char* kCreateDepartmentIndex =
    "CREATE INDEX IF NOT EXISTS user_departments_dept ON user_departments(department_external_id)";

bool is_user_put(ChangeKind kind) { return kind == ChangeKind::create_user || kind == ChangeKind::update_user; }

// The same literal everywhere: cached() keys prepared statements by the SQL's address.
constexpr const char* kDeleteUserMemberships = "DELETE FROM user_departments WHERE user_external_id=?1";

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

}  // namespace

SqliteTarget::SqliteTarget(const std::string& path) {
    // temp_store=MEMORY keeps each change's SAVEPOINT sub-journal in memory: on a file it costs a
    // temp-file write of every page the change touches (GBs of pwrite for a 100k-user first sync).
    // 16 KiB pages (before WAL fixes the page size of a new file; an existing file keeps its own):
    // a fifth of the page reads and writes of a large sync, each a system call.
    db_ = sqlite_util::open_database(path, {"the SQLite target",
                                            "the target schema",
                                            10000,
                                            {"PRAGMA page_size=16384", "PRAGMA journal_mode=WAL",
                                             "PRAGMA synchronous=NORMAL", "PRAGMA temp_store=MEMORY"},
                                            kSchema});
    // Named unique indexes unless the table has the older UNIQUE columns (origin 'u').
    {
        Stmt legacy(db_, "SELECT count(*) FROM pragma_index_list('users') WHERE origin='u'");
        named_unique_indexes_ = legacy.step() == SQLITE_ROW && legacy.integer(0) == 0;
    }
    if (named_unique_indexes_) {
        for (const char* column : kUniqueColumns) {
            if (auto r = sqlite_util::exec(db_, create_unique_index(column)); !r) {
                sqlite3_close(db_);
                throw std::runtime_error("cannot create the target schema in " + path + ": " + r.error());
            }
        }
    }
}

SqliteTarget::~SqliteTarget() {
    statements_.clear();  // finalize before closing
    if (db_) sqlite3_close(db_);
}

Stmt& SqliteTarget::cached(const char* sql) {
    auto& slot = statements_[sql];
    if (!slot)
        slot = std::make_unique<Stmt>(db_, sql);
    else
        slot->reset();
    return *slot;
}

Status SqliteTarget::read_departments(OrgSnapshot& s) {
    Stmt st(db_,
            "SELECT external_id, name, parent_external_id, sort_order, description, leaders, custom FROM departments");
    return st.each_row([&] {
        OrgDepartment d;
        st.columns(d.external_id, d.name, d.parent_external_id, d.order, d.description, d.leaders, d.custom);
        s.departments.emplace(d.external_id, std::move(d));
    });
}

// Users with their memberships, one user at a time: both queries in external id order, merged
// (no temporary map of every membership). A user is complete once its memberships are read; with
// `desired`, an active one equal to desired's row is kept as its id only.
Status SqliteTarget::read_users(OrgSnapshot& s, const OrgSnapshot* desired) {
    Stmt st(db_,
            "SELECT external_id, union_id, username, display_name, email, phone, employee_number, title, "
            "primary_department, manager, active, avatar_url, hired_at, custom, removed_at FROM users "
            "ORDER BY external_id");
    Stmt ms(db_,
            "SELECT user_external_id, department_external_id, sort_order, is_leader FROM user_departments "
            "ORDER BY user_external_id, position");
    if (!ms.ok()) return fail(ms.prepare_error());
    int mrc = ms.step();
    std::string member;  // user id of the membership row at the cursor
    auto next_membership = [&] {
        mrc = ms.step();
        if (mrc == SQLITE_ROW) member = ms.text(0);
    };
    if (mrc == SQLITE_ROW) member = ms.text(0);
    auto status = st.each_row([&] {
        OrgUser u;
        st.columns(u.external_id, u.union_id, u.username, u.display_name, u.email, u.phone, u.employee_number, u.title,
                   u.primary_department, u.manager, u.active, u.avatar_url, u.hired_at, u.custom);
        while (mrc == SQLITE_ROW && member < u.external_id) next_membership();  // without a user row: ignored
        while (mrc == SQLITE_ROW && member == u.external_id) {
            u.departments.push_back(Membership{ms.text(1), ms.integer(2), ms.integer(3) != 0});
            next_membership();
        }
        if (!st.is_null(14)) {
            s.removed_users.emplace(u.external_id, st.integer(14));
            s.removed_user_rows.emplace(u.external_id, std::move(u));
            return;
        }
        if (desired && row_as_desired(*desired, u)) {
            s.users_as_desired.push_back(std::move(u.external_id));  // in order: the query sorts
            return;
        }
        s.users.emplace_hint(s.users.end(), u.external_id, std::move(u));
    });
    if (!status) return status;
    if (mrc != SQLITE_ROW && mrc != SQLITE_DONE) return fail(sqlite3_errmsg(db_));
    return {};
}

Result<OrgSnapshot> SqliteTarget::read_all(const OrgSnapshot* desired) {
    OrgSnapshot s;
    if (auto r = read_departments(s); !r) return fail(r.error());
    if (auto r = read_users(s, desired); !r) return fail(r.error());
    return s;
}

Result<OrgSnapshot> SqliteTarget::read() { return read_all(nullptr); }

Result<OrgSnapshot> SqliteTarget::read_against(const OrgSnapshot& desired) { return read_all(&desired); }

Status SqliteTarget::begin() {
    bulk_ = false;
    bulk_puts_.clear();
    bulk_error_.clear();
    if (auto r = sqlite_util::exec(db_, "BEGIN IMMEDIATE"); !r) return r;
    if (!named_unique_indexes_) return {};
    // Into an empty table (a first sync), each row would go into three unique indexes, and each
    // membership into the department index, in an order unrelated to theirs, which costs more
    // than the rows themselves; built once at the end from the rows instead (finish_batches).
    // Within the transaction: a crash or a rollback leaves them as they were.
    if (!table_empty("SELECT 1 FROM users LIMIT 1")) return {};
    no_memberships_before_ = table_empty("SELECT 1 FROM user_departments LIMIT 1");
    for (const char* column : kUniqueColumns) {
        if (auto r = sqlite_util::exec(db_, std::string("DROP INDEX users_") + column); !r) {
            rollback();
            return fail("cannot drop the index on users." + std::string(column) + ": " + r.error());
        }
    }
    if (auto r = sqlite_util::exec(db_, "DROP INDEX user_departments_dept"); !r) {
        rollback();
        return fail("cannot drop the index on user_departments.department_external_id: " + r.error());
    }
    bulk_ = true;
    return {};
}

bool SqliteTarget::table_empty(const char* query) {
    Stmt any(db_, query);
    return any.step() == SQLITE_DONE;
}

std::vector<std::pair<const Change*, std::string>> SqliteTarget::finish_batches() {
    std::vector<std::pair<const Change*, std::string>> failed;
    if (!bulk_) return failed;
    bulk_ = false;
    if (auto r = sqlite_util::exec(db_, kCreateDepartmentIndex); !r) {
        bulk_error_ = "cannot build the index on user_departments.department_external_id: " + r.error();
        return failed;
    }
    for (const char* column : kUniqueColumns) {
        const std::string create = create_unique_index(column);
        if (sqlite_util::exec(db_, create)) continue;
        // The plan gives each value to one user, so this is a defect elsewhere; still, the outcome
        // is that of writing row by row: the user written first keeps the value, every later one
        // fails with the error its own write would have had.
        auto r = drop_later_duplicates(column, failed);
        if (r) r = sqlite_util::exec(db_, create);
        if (!r) {
            bulk_error_ = "cannot build the unique index on users." + std::string(column) + ": " + r.error();
            break;
        }
    }
    std::vector<const Change*>().swap(bulk_puts_);
    return failed;
}

Status SqliteTarget::drop_later_duplicates(const std::string& column,
                                           std::vector<std::pair<const Change*, std::string>>& failed) {
    const std::string error = "UNIQUE constraint failed: users." + column;
    std::unordered_map<std::string, std::string> value_of;  // external_id -> shared value
    Stmt q(db_, rows_sharing(column).c_str());
    if (auto r = q.each_row([&] { value_of.emplace(q.text(0), q.text(1)); }); !r) return r;
    std::unordered_map<std::string, std::string> holder;  // value -> the first user written with it
    std::unordered_set<std::string> dropped;
    for (const Change* c : bulk_puts_) {
        auto it = value_of.find(c->external_id);
        if (it == value_of.end()) continue;
        const auto [h, first] = holder.emplace(it->second, c->external_id);
        if (!first && h->second != c->external_id) dropped.insert(c->external_id);
    }
    for (const std::string& id : dropped)
        if (auto r = delete_user(id); !r) return r;
    for (const Change* c : bulk_puts_)
        if (dropped.count(c->external_id) > 0) failed.emplace_back(c, error);
    return {};
}

Status SqliteTarget::commit() {
    if (bulk_ && !finish_batches().empty() && bulk_error_.empty())
        bulk_error_ = "duplicate unique values among the users written";  // only for a caller without finish_batches()
    for (auto& [sql, st] : statements_) st->reset();
    if (!bulk_error_.empty()) return fail(bulk_error_);
    return sqlite_util::exec(db_, "COMMIT");
}

void SqliteTarget::rollback() {
    bulk_ = false;
    std::vector<const Change*>().swap(bulk_puts_);
    for (auto& [sql, st] : statements_) st->reset();
    (void)sqlite_util::exec(db_, "ROLLBACK");  // nothing left to undo when it fails: no transaction open
}

void SqliteTarget::note_put(const Change& change) {
    if (bulk_ && is_user_put(change.kind)) bulk_puts_.push_back(&change);
}

Status SqliteTarget::apply(const Change& change) {
    Stmt& savepoint = cached("SAVEPOINT item");
    if (auto r = savepoint.run(); !r) return r;
    auto outcome = write_change(change);
    // Best effort: if even these fail, the run's COMMIT fails and nothing is applied.
    if (!outcome) (void)cached("ROLLBACK TO item").run();
    (void)cached("RELEASE item").run();
    if (outcome) note_put(change);
    return outcome;
}

void SqliteTarget::apply_batch(const Change* changes, std::size_t n, std::vector<Status>& outcomes) {
    outcomes.assign(n, Status{});
    // A per-change SAVEPOINT copies every page the change touches into the sub-journal and
    // back; sharing one between the changes of a batch pays that once per page per batch.
    Stmt& savepoint = cached("SAVEPOINT batch");
    bool clean = savepoint.run().ok();
    for (std::size_t i = 0; clean && i < n; ++i)
        if (!write_change(changes[i])) clean = false;
    if (clean && cached("RELEASE batch").run()) {
        for (std::size_t i = 0; i < n; ++i) note_put(changes[i]);
        return;
    }
    if (savepoint.ok()) {
        (void)cached("ROLLBACK TO batch").run();
        (void)cached("RELEASE batch").run();
    }
    outcomes.clear();
    for (std::size_t i = 0; i < n; ++i) outcomes.push_back(apply(changes[i]));
}

Status SqliteTarget::put_department(const OrgDepartment& d) {
    Stmt& st = cached(
        "INSERT INTO departments(external_id, name, parent_external_id, sort_order, description, leaders, "
        "custom, updated_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(external_id) DO UPDATE SET "
        "name=excluded.name, parent_external_id=excluded.parent_external_id, sort_order=excluded.sort_order, "
        "description=excluded.description, leaders=excluded.leaders, custom=excluded.custom, "
        "updated_at=excluded.updated_at");
    if (st.ok())
        st.bind_all(d.external_id, d.name, Stmt::or_null(d.parent_external_id), d.order, d.description,
                    json_string_list(d.leaders), json_string_map(d.custom), now_s());
    return st.run();
}

Status SqliteTarget::delete_rows(const char* sql, const std::string& external_id) {
    Stmt& st = cached(sql);
    if (st.ok()) st.bind(1, external_id);
    return st.run();
}

Status SqliteTarget::put_user(const OrgUser& u) {
    Stmt& st = cached(
        "INSERT INTO users(external_id, union_id, username, display_name, email, phone, employee_number, "
        "title, primary_department, manager, active, avatar_url, hired_at, custom, removed_at, updated_at) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,NULL,?15) ON CONFLICT(external_id) DO UPDATE SET "
        "union_id=excluded.union_id, username=excluded.username, display_name=excluded.display_name, "
        "email=excluded.email, phone=excluded.phone, employee_number=excluded.employee_number, "
        "title=excluded.title, primary_department=excluded.primary_department, manager=excluded.manager, "
        "active=excluded.active, avatar_url=excluded.avatar_url, hired_at=excluded.hired_at, "
        "custom=excluded.custom, removed_at=NULL, updated_at=excluded.updated_at");
    if (st.ok())
        st.bind_all(u.external_id, u.union_id, Stmt::or_null(u.username), u.display_name, Stmt::or_null(u.email),
                    Stmt::or_null(u.phone), u.employee_number, u.title, Stmt::or_null(u.primary_department),
                    Stmt::or_null(u.manager), u.active, u.avatar_url, u.hired_at, json_string_map(u.custom), now_s());
    const sqlite3_int64 last_rowid = sqlite3_last_insert_rowid(db_);
    if (auto r = st.run(); !r) return r;
    // A row new to a table that had no memberships at the start of the run has none to replace
    // (an update leaves the last insert rowid as it was).
    const bool fresh = bulk_ && no_memberships_before_ && sqlite3_last_insert_rowid(db_) != last_rowid;
    if (!fresh)
        if (auto r = delete_rows(kDeleteUserMemberships, u.external_id); !r) return r;
    Stmt& ins = cached(
        "INSERT INTO user_departments(user_external_id, department_external_id, position, sort_order, "
        "is_leader) VALUES(?1,?2,?3,?4,?5)");
    if (!ins.ok()) return fail(ins.prepare_error());
    for (size_t i = 0; i < u.departments.size(); ++i) {
        const auto& m = u.departments[i];
        ins.bind_all(u.external_id, m.department, static_cast<std::int64_t>(i), m.order, m.leader);
        if (auto r = ins.run(); !r) return r;
        ins.reset();
    }
    return {};
}

// The row stays (removed_at kept from the first disable) without its memberships; `kept`, when
// given, carries the unique values it keeps (released ones are empty).
Status SqliteTarget::disable_user(const std::string& external_id, const OrgUser* kept) {
    if (kept) {
        Stmt& st = cached(
            "UPDATE users SET active=0, removed_at=COALESCE(removed_at, ?2), updated_at=?2, "
            "username=?3, email=?4, phone=?5 WHERE external_id=?1");
        if (st.ok())
            st.bind_all(external_id, now_s(), Stmt::or_null(kept->username), Stmt::or_null(kept->email),
                        Stmt::or_null(kept->phone));
        if (auto r = st.run(); !r) return r;
    } else {
        Stmt& st = cached(
            "UPDATE users SET active=0, removed_at=COALESCE(removed_at, ?2), updated_at=?2 "
            "WHERE external_id=?1");
        if (st.ok()) st.bind(1, external_id).bind(2, now_s());
        if (auto r = st.run(); !r) return r;
    }
    return delete_rows(kDeleteUserMemberships, external_id);
}

Status SqliteTarget::delete_user(const std::string& external_id) {
    if (auto r = delete_rows("DELETE FROM users WHERE external_id=?1", external_id); !r) return r;
    return delete_rows(kDeleteUserMemberships, external_id);
}

Status SqliteTarget::delete_department(const std::string& external_id) {
    // Built again first in a bulk run (a no-op once there: a rolled-back batch may have undone it).
    if (bulk_)
        if (auto r = sqlite_util::exec(db_, kCreateDepartmentIndex); !r) return r;
    if (auto r = delete_rows("DELETE FROM departments WHERE external_id=?1", external_id); !r) return r;
    return delete_rows("DELETE FROM user_departments WHERE department_external_id=?1", external_id);
}

}  // namespace dingbridge::agent
