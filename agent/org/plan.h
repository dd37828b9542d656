#pragma once
// Diff and ordered plan (pure): compares the desired org (fetched from DingTalk and mapped)
// with the target's current state by external_id — never by name, so a rename or a move is an
// update of the same object — and orders the changes so that every step is valid on its own:
// department creates and updates parents-first, user creates/updates, user removals (disable or
// delete), department removals children-first. Also applies the unique-field conflict policy
// (clear_field: the later user is written without the contested value; skip_user: the later
// user is left out; both recorded), the "no removals from an incomplete read" rule and the
// deletion safeguard.
//
// Unique values (username, email, phone) are checked against every row that holds one in the
// target, active or removed. A removed (disabled) row gives its value up to an active user. Every
// step is valid on its own under UNIQUE constraints: user deletions come first, then "release"
// writes (a row that gives a value to another row is first written with that field empty: a
// removed row stays removed, an active row is written again with its final state later), then
// creates and updates, then disables. That stages swaps (A takes B's e-mail while B takes A's).
// A disabled user keeps no department memberships. No I/O; unit-tested directly.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/org/schema.h"

namespace dingbridge::agent {

enum class ChangeKind {
    create_department,
    update_department,
    create_user,
    update_user,
    disable_user,
    delete_user,
    delete_department,
};
const char* change_kind_name(ChangeKind kind);

struct Change {
    ChangeKind kind = ChangeKind::create_department;
    SmallString external_id;  // SmallString: a first sync of 100,000 users plans 100,000 changes
    // The state to write for creates/updates; for disable_user the row as it stays (active=false,
    // no memberships, released unique values empty); the current one for delete_department;
    // nullptr for delete_user. Points into the snapshots given to make_plan (which must outlive
    // the plan) or into the plan's own `staged` rows.
    const OrgDepartment* department = nullptr;
    const OrgUser* user = nullptr;
    SmallString detail;  // fields that change, or why it is removed
};

struct SkippedItem {
    std::string object_type;  // "user" or "department"
    std::string external_id;
    std::string reason;
};

// What happens to a user whose username/email/phone is already held by another user
// (mapping.yaml sync.conflict_policy).
enum class ConflictPolicy {
    clear_field,  // write the user without the contested value (Entra Connect's PropertyConflict)
    skip_user,    // leave the user out (a user already in the target stays as it is)
};

struct PlanOptions {
    ConflictPolicy conflict_policy = ConflictPolicy::clear_field;
    bool allow_removals = true;               // false after an incomplete read
    bool delete_removed_users = false;        // removed_users.action: delete
    std::int64_t delete_disabled_before = 0;  // Unix s; disabled users removed before this are deleted (0 = never)
    // Objects whose DingTalk state is unknown after a failed read: neither updated nor removed.
    std::set<std::string> frozen_users;
    std::set<std::string> frozen_departments;
    // New users whose manager is also new come after that manager (else: id order). For targets
    // that name a manager by an id the target assigns (SCIM): a report created first would need
    // a second write to link its manager.
    bool managers_first = false;
    // A target that cannot hold some field empty (an LDAP entry's RDN, cn and sn; SCIM's
    // userName) writes its own value instead (the DingTalk userid): given a user whose unique
    // value the plan cleared (a conflict, or a value handed over to another user first), it puts
    // that value in, so the plan writes what the target will hold and the next run's read
    // compares equal. Target::fill_required.
    std::function<void(OrgUser&)> fill_required;
    // How the target tells usernames apart when not byte by byte (an LDAP uid RDN:
    // directory_match_key; SCIM's userName: scim_match_key): "Bob" and "bob" then contest one
    // value. nullptr: exactly.
    std::string (*username_key)(std::string_view) = nullptr;
};

// The change kinds counted per plan and per run, in history column order (one list: the plan's
// counts, the run counters, the history columns and the printed summaries come from it).
#define DINGBRIDGE_CHANGE_COUNTERS(X) \
    X(create_department)              \
    X(update_department)              \
    X(delete_department)              \
    X(create_user)                    \
    X(update_user)                    \
    X(disable_user)                   \
    X(delete_user)

struct PlanCounts {
#define DINGBRIDGE_PLAN_COUNT(name) int name = 0;
    DINGBRIDGE_CHANGE_COUNTERS(DINGBRIDGE_PLAN_COUNT)
#undef DINGBRIDGE_PLAN_COUNT
    int removals() const { return delete_department + disable_user + delete_user; }
    int total() const {
#define DINGBRIDGE_PLAN_SUM(name) +name
        return 0 DINGBRIDGE_CHANGE_COUNTERS(DINGBRIDGE_PLAN_SUM);
#undef DINGBRIDGE_PLAN_SUM
    }
};

struct SyncPlan {
    std::vector<Change> changes;
    std::vector<SkippedItem> skipped;
    // Unique-value conflicts resolved by clearing the field (object_type "user"); skip_user
    // conflicts are in `skipped`.
    std::vector<SkippedItem> conflicts;
    // Rows the plan writes that are in neither snapshot (staged releases, cleared conflicts,
    // disabled rows); Change::user points here.
    std::vector<std::unique_ptr<OrgUser>> staged;
    PlanCounts counts;
    bool removals_suppressed = false;  // removals were due but the read was incomplete
    int suppressed_removals = 0;
};

// `current` may list users by id only (users_as_desired: read as equal to `desired`); each is
// then planned as present with desired's row.
SyncPlan make_plan(const OrgSnapshot& desired, const OrgSnapshot& current, const PlanOptions& options);

// Deletion safeguard: "max_deletes" as a count ("50") or a percentage ("10%") of the objects
// the target holds.
struct DeleteLimit {
    bool percent = false;
    double value = 0;
    // Parses "50" or "10%"; nullopt when invalid.
    static std::optional<DeleteLimit> parse(const std::string& text);
    // Returns an explanation when `removals` exceeds the limit for a target holding `existing`.
    std::optional<std::string> exceeded(int removals, int existing) const;
};

// Structural problems of a fetched tree (missing parent, cycle); empty when valid.
std::vector<std::string> validate_tree(const std::map<std::string, OrgDepartment>& departments,
                                       const std::string& root_external_id);

}  // namespace dingbridge::agent
