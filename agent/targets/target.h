#pragma once
// Target: where the identity org is written (ARCHITECTURE.md, "Targets"). One interface for
// the embedded SQLite directory and, later, SCIM: read the current state, then apply a plan's
// changes one by one inside a run. `begin()`/`commit()` bracket a run; `apply()` isolates one
// change so that a failure is returned (and recorded by the caller) without undoing the others.
// Every call returns a Result (shared/result.h): an error is a value, never an exception.
// Not thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/org/plan.h"
#include "agent/org/schema.h"
#include "shared/result.h"

namespace dingbridge::agent {

class Target {
public:
    virtual ~Target() = default;
    // Drops from the desired org what this target cannot hold (e.g. an LDAP directory has no
    // department order), so that the diff against read() plans nothing when nothing changed.
    // Called once per run with the full desired org, before the plan is made.
    virtual void normalize(OrgSnapshot& desired) { (void)desired; }
    // Puts in the value the target writes for a field it cannot hold empty (the DingTalk userid
    // for an LDAP entry's RDN, cn and sn, or SCIM's userName), as normalize() does for the
    // desired org; the plan calls it on users whose unique value it cleared
    // (PlanOptions::fill_required).
    virtual void fill_required(OrgUser& user) const { (void)user; }
    // True when the target names a user's manager by an id it assigns itself (SCIM), so that a
    // user created before its manager costs a second write: a sync (full, or of a batch of
    // events) then creates new managers before their new reports (PlanOptions::managers_first).
    virtual bool wants_managers_first() const { return false; }
    // How this target matches usernames when not byte by byte (an LDAP uid RDN ignores case,
    // width and repeated spaces; SCIM's userName is caseExact false): the plan then lets only one
    // user hold names it makes one (PlanOptions::username_key). nullptr: exactly.
    virtual std::string (*username_key() const)(std::string_view) { return nullptr; }
    // After the read, before the plan: names of `desired` the target cannot hold side by side
    // (LDAP: sibling departments whose ou values match as one) are made distinct, deciding by
    // what `current` (the target as read) holds.
    virtual void resolve_name_clashes(OrgSnapshot& desired, const OrgSnapshot& current) const {
        (void)desired;
        (void)current;
    }
    // The plan as made, before any of its changes is applied: a target whose writes name other
    // objects by what the plan writes for them (LDAP: a manager's or a leader's DN, which
    // follows a username the plan's conflict policy replaced) takes them from it.
    virtual void planned(const SyncPlan& plan) { (void)plan; }
    // Current state.
    virtual Result<OrgSnapshot> read() = 0;
    // Current state, compared while reading with `desired` (already normalize()d): a target may
    // leave an active user whose row equals desired's out of `users` and list its id in
    // `users_as_desired` instead, so that a large no-op resync does not hold every user twice.
    // make_plan treats such a user as present and unchanged. By default, read() and then the
    // equal rows dropped (the read's own peak stays; the plan reuses what they held).
    virtual Result<OrgSnapshot> read_against(const OrgSnapshot& desired) {
        auto current = read();
        if (current) keep_equal_users_as_ids(*current, desired);
        return current;
    }
    virtual Status begin() = 0;
    // Applies one change.
    virtual Status apply(const Change& change) = 0;
    // Applies changes[0..n) in order with exactly the outcome of calling apply() on each:
    // outcomes[i] is the result of change i, and only a failed change is undone. A target may
    // group the changes to save per-change overhead, falling back to one by one on a failure.
    virtual void apply_batch(const Change* changes, std::size_t n, std::vector<Status>& outcomes) {
        outcomes.clear();
        for (std::size_t i = 0; i < n; ++i) outcomes.push_back(apply(changes[i]));
    }
    // How many changes one apply_batch() is given: progress is counted after each batch, so a
    // target without batching (a round trip per change) takes them one by one and the run's
    // live counters move as its changes are applied.
    virtual std::size_t apply_batch_size() const { return 1; }
    // Called once after the last apply_batch() of a run (before commit()). A target that defers
    // part of its changes over the whole run (SCIM: group memberships, sent per group) sends it
    // now and returns the changes whose deferred part failed — pointers into the arrays given to
    // apply_batch(), with the error — although apply_batch() reported them as applied.
    virtual std::vector<std::pair<const Change*, std::string>> finish_batches() { return {}; }
    // Conflicts the target settled itself while applying, by sync.conflict_policy (SCIM: a
    // userName held by a resource that is not ours, the user written with its DingTalk id
    // instead): (user id, what happened) since the last call. Applied changes, recorded as
    // conflicts, not failures: a failure would be tried again (the event path reads the user
    // again each time) and could not end otherwise.
    virtual std::vector<std::pair<std::string, std::string>> take_settled_conflicts() { return {}; }
    virtual Status commit() = 0;
    virtual void rollback() = 0;
};

// A user's memberships in the order the event path expects from a target's read() and normalize():
// `primary` first (patch_desired takes the first membership as the primary department), then by id.
void sort_primary_first(std::vector<Membership>& memberships, const std::string& primary);

// The five writes a plan's changes come down to, for a target that performs each change as one of
// them (SQLite, LDAP): write_change() dispatches on the change kind and checks that a create or an
// update carries its row, in one place for every such target. Derive privately; not an interface
// for callers.
class ChangeWriter {
protected:
    ~ChangeWriter() = default;
    Status write_change(const Change& c);

    virtual Status put_department(const OrgDepartment& d) = 0;
    virtual Status put_user(const OrgUser& u) = 0;
    // `kept`: the row as it stays (released unique values empty), or nullptr (Change::user).
    virtual Status disable_user(const std::string& external_id, const OrgUser* kept) = 0;
    virtual Status delete_user(const std::string& external_id) = 0;
    virtual Status delete_department(const std::string& external_id) = 0;
};

}  // namespace dingbridge::agent
