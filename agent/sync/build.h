#pragma once
// From what a full read fetched to the desired identity org (pure): applies the mapping's
// subtree include/exclude rules and user skip rules, sets the structure (parents, leaders,
// per-department memberships with order and leader flag, primary department, manager) and marks
// what is unknown after failed reads as frozen, so that the plan neither updates nor removes it.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/dingtalk/model.h"
#include "agent/dingtalk/packed_item.h"
#include "agent/mapping/mapping.h"
#include "agent/org/plan.h"
#include "agent/org/schema.h"

namespace dingbridge::agent {

// A user as a full sync holds it from the fetch to the build: the first list item seen, packed
// (PackedUserItem), and one place per department page that listed the user.
struct FetchedUser {
    dingtalk::PackedUserItem item;
    std::vector<dingtalk::MergedUser::Place> places;
    SmallString manager_userid;  // 直属主管, only from /topapi/v2/user/get

    dingtalk::MergedUser merged() const { return {item.unpack(), places, manager_userid}; }
};

struct FetchedOrg {
    std::int64_t root_id = 1;
    std::map<std::int64_t, dingtalk::DeptDetail> departments;    // department/get results
    std::map<std::int64_t, std::vector<std::int64_t>> children;  // listsub results
    // Hashed: a full sync merges one entry per user per department page (§7); build_desired
    // visits them in userid order.
    std::unordered_map<std::string, FetchedUser> users;
    std::set<std::int64_t> failed_departments;  // get, listsub or a user page failed
    std::set<std::string> failed_users;         // their v2/user/get failed: left as they are
    // Without department/get: leaders from the user pages' leader flags, in page order.
    bool leaders_from_pages = false;
    std::map<std::int64_t, std::vector<std::string>> page_leaders;
    std::vector<std::string> problems;  // duplicates seen while walking
    // The tree below the root's children came from /department/list alone (one call, not checked
    // department by department): full_sync confirms what it would delete on that basis.
    bool tree_from_list = false;
    // Departments that list gave below an excluded one (not walked, no call): what run mode's
    // event path would otherwise buy a department/get each to learn is outside.
    std::vector<std::int64_t> below_excluded;
    bool complete() const { return failed_departments.empty(); }
};

struct DesiredOrg {
    OrgSnapshot snapshot;
    std::set<std::string> frozen_users;
    std::set<std::string> frozen_departments;
    std::vector<SkippedItem> skipped;  // skip rules
};

// Merges one user-list item seen in department `dept_id` into `users` (multi-department users
// appear once per department, §7).
void merge_user_item(std::unordered_map<std::string, FetchedUser>& users, std::int64_t dept_id,
                     const dingtalk::UserItem& item);

// A user's memberships in the departments `kept` accepts: in the order DingTalk lists them
// (dept_id_list: main department first), then any that only a department page listed (missing
// from dept_id_list); each with the order and leader flag a page gave.
std::vector<Membership> user_memberships(const dingtalk::MergedUser& m, const std::function<bool(std::int64_t)>& kept);

DesiredOrg build_desired(const FetchedOrg& fetched, const Mapping& mapping);
// The structural rules shared by the full and the event-driven sync. With ManagerSource::leaders
// each user's manager is the first leader of the primary department other than the user, else of
// the nearest ancestor with one (users' `manager` must be empty on entry); with ::dingtalk the
// manager_userid already set is kept when it names a synced user. Leaders that are not synced
// users are dropped (kept when `trust_all`: after an incomplete read a leader may simply not have
// been seen).
void derive_managers(OrgSnapshot& snapshot, const std::set<std::string>& frozen_users, bool trust_all,
                     ManagerSource source);
// The manager ManagerSource::leaders gives `userid` when `dept` is its primary department: the
// first leader other than the user for which `known(leader)` holds, of `dept` or of its nearest
// ancestor with one; empty when there is none.
template <class Known>
std::string leader_manager(const OrgSnapshot& snapshot, const std::string& userid, std::string dept, Known&& known) {
    for (std::size_t guard = 0; !dept.empty() && guard < snapshot.departments.size(); ++guard) {
        auto it = snapshot.departments.find(dept);
        if (it == snapshot.departments.end()) break;
        for (const auto& l : it->second.leaders)
            if (l != userid && known(l)) return l;
        dept = it->second.parent_external_id;
    }
    return {};
}
// The same, but frees each fetched user as soon as it is mapped (fetched.users ends empty), so
// that the raw and the mapped copies of the users are never both alive: the peak of a full sync.
DesiredOrg build_desired(FetchedOrg&& fetched, const Mapping& mapping);

}  // namespace dingbridge::agent
