#include "agent/targets/sqlite_target.h"

#include <ctime>
#include <stdexcept>

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
  username           TEXT UNIQUE,
  display_name       TEXT NOT NULL DEFAULT '',
  email              TEXT UNIQUE,
  phone              TEXT UNIQUE,
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

// The same literal everywhere: cached() keys prepared statements by the SQL's address.
constexpr const char* kDeleteUserMemberships = "DELETE FROM user_departments WHERE user_external_id=?1";

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

}  // namespace

SqliteTarget::SqliteTarget(const std::string& path) {
    // temp_store=MEMORY keeps each change's SAVEPOINT sub-journal in memory: on a file it costs a
    // temp-file write of every page the change touches (GBs of pwrite for a 100k-user first sync).
    db_ = sqlite_util::open_database(
        path, {"the SQLite target",
               "the target schema",
               10000,
               {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA temp_store=MEMORY"},
               kSchema});
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

Status SqliteTarget::begin() { return sqlite_util::exec(db_, "BEGIN IMMEDIATE"); }

Status SqliteTarget::commit() {
    for (auto& [sql, st] : statements_) st->reset();
    return sqlite_util::exec(db_, "COMMIT");
}

void SqliteTarget::rollback() {
    for (auto& [sql, st] : statements_) st->reset();
    (void)sqlite_util::exec(db_, "ROLLBACK");  // nothing left to undo when it fails: no transaction open
}

Status SqliteTarget::apply(const Change& change) {
    Stmt& savepoint = cached("SAVEPOINT item");
    if (auto r = savepoint.run(); !r) return r;
    auto outcome = write_change(change);
    // Best effort: if even these fail, the run's COMMIT fails and nothing is applied.
    if (!outcome) (void)cached("ROLLBACK TO item").run();
    (void)cached("RELEASE item").run();
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
    if (clean && cached("RELEASE batch").run()) return;
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
    if (auto r = st.run(); !r) return r;
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
    if (auto r = delete_rows("DELETE FROM departments WHERE external_id=?1", external_id); !r) return r;
    return delete_rows("DELETE FROM user_departments WHERE department_external_id=?1", external_id);
}

}  // namespace dingbridge::agent
