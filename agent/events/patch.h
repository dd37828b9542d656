#pragma once
// The desired org after a batch of events (pure): the target's current state with the objects
// that were fetched by id put in place — departments from department/get, users from user/get,
// nullopt meaning DingTalk no longer has it (60003 / 60121) — using the same mapping and the same
// structural rules as a full sync (include/exclude subtrees, memberships only in synced
// departments, primary department first, managers and leaders via derive_managers). A
// department whose parent is no longer synced leaves with its subtree, and memberships in it go.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/dingtalk/model.h"
#include "agent/mapping/mapping.h"
#include "agent/org/plan.h"
#include "agent/org/schema.h"

namespace dingbridge::agent::events {

struct EventFetch {
    std::map<std::int64_t, std::optional<dingtalk::DeptDetail>> departments;
    std::map<std::string, std::optional<dingtalk::MergedUser>> users;
};

struct PatchResult {
    OrgSnapshot desired;
    std::vector<SkippedItem> skipped;
};

PatchResult patch_desired(const OrgSnapshot& current, const EventFetch& fetched, const Mapping& mapping,
                          std::int64_t root_id);

// Departments a fetched object names that neither the target holds nor this batch fetched: a
// fetched user's departments and a fetched department's parent. A user moved into a department
// created in the same burst (whose own event may be in a later batch, or not yet delivered)
// would otherwise lose that membership, and with it possibly its only place. Excluded
// departments and `outside` (fetched before and found outside the synced tree) are left out, so
// a user who is also in an unsynced department costs no call for it on every event.
std::vector<std::int64_t> unknown_departments(const OrgSnapshot& current, const EventFetch& fetched,
                                              const Mapping& mapping, std::int64_t root_id,
                                              const std::set<std::int64_t>& outside);

// Users the target holds whose every membership is in a department this batch found gone (60003)
// and that the batch did not read: planned from the target, they would be disabled. DingTalk
// removes only empty departments, so they moved or left, in an event that may be late or lost;
// user/get tells which (one call each, only when a department is removed).
std::vector<std::string> users_left_without_a_department(const OrgSnapshot& current, const EventFetch& fetched);

// Departments the target holds under a department this batch found gone (60003), which the
// batch did not read: patched from the target, they would leave with their whole subtree and
// their members be disabled. DingTalk removes only empty departments, so they moved (or went
// too) in an event that may be late or lost: department/get tells which (one call each, only
// when a department is removed).
std::vector<std::int64_t> departments_left_without_a_parent(const OrgSnapshot& current, const EventFetch& fetched);

// Departments on a parent loop when the fetched departments are put in place over the target's
// tree: DingTalk has no loops, so one comes from a department that moved under a former
// subdepartment whose own move (out from under it, always first) this batch did not read — its
// event later, waiting for a retry, or lost. Planned as it is, the loop would drop both with
// their subtrees and disable their members. The held departments on it are to be read; a loop
// of fetched departments only (reads that straddled the moves) is to be read again.
std::vector<std::int64_t> departments_on_a_loop(const OrgSnapshot& current, const EventFetch& fetched,
                                                const Mapping& mapping, std::int64_t root_id);

// Departments whose leader flag of a fetched user differs from what the target holds, or from
// the leader list this batch read for them (read before the flag changed): their leader list
// (and so managers) must be read (again) with department/get.
std::vector<std::int64_t> leader_changes(const OrgSnapshot& current, const EventFetch& fetched);

}  // namespace dingbridge::agent::events
