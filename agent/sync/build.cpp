#include "agent/sync/build.h"

#include <algorithm>
#include <deque>

namespace dingbridge::agent {

std::vector<Membership> user_memberships(const dingtalk::MergedUser& m, const std::function<bool(std::int64_t)>& kept) {
    std::vector<Membership> places;
    for (auto dept : m.item.dept_id_list) {
        if (!kept(dept)) continue;
        Membership p{std::to_string(dept), 0, false};
        for (const auto& pl : m.places)
            if (pl.dept_id == dept) {
                p.order = pl.order;
                p.leader = pl.leader;
            }
        places.push_back(p);
    }
    for (const auto& pl : m.places) {
        if (!kept(pl.dept_id)) continue;
        std::string id = std::to_string(pl.dept_id);
        if (std::none_of(places.begin(), places.end(), [&](const Membership& x) { return x.department == id; }))
            places.push_back({id, pl.order, pl.leader});
    }
    return places;
}

void merge_user_item(std::unordered_map<std::string, FetchedUser>& users, std::int64_t dept_id,
                     const dingtalk::UserItem& item) {
    auto [it, inserted] = users.try_emplace(item.userid.str());
    FetchedUser& m = it->second;
    for (const auto& p : m.places)
        if (p.dept_id == dept_id) return;  // the same page read twice (retry after a partial answer)
    m.places.push_back({dept_id, item.dept_order, item.leader});
    if (inserted) m.item = dingtalk::PackedUserItem(item);
}

void derive_managers(OrgSnapshot& snapshot, const std::set<std::string>& frozen_users, bool trust_all,
                     ManagerSource source) {
    // After an incomplete read a leader may simply not have been seen: keep such references.
    auto known = [&](const std::string& id) {
        return trust_all || snapshot.users.count(id) > 0 || frozen_users.count(id) > 0;
    };
    // Leaders that are not synced users are dropped, so the target never points at nobody. First:
    // the leaders' lists are then the known leaders in order, which is all the managers below
    // need, without looking every user's leaders up again (100,000 map lookups and more).
    for (auto& [id, d] : snapshot.departments) {
        std::vector<std::string> keep;
        for (auto& l : d.leaders)
            if (known(l)) keep.push_back(l);
        d.leaders = std::move(keep);
    }
    if (source == ManagerSource::dingtalk) {
        // Manager from DingTalk (manager_userid, fetched by v2/user/get): kept when it names a
        // synced user; a cycle (a manages b manages a) is kept as DingTalk has it, never followed.
        for (auto& [userid, u] : snapshot.users)
            if (!u.manager.empty() && (u.manager == userid || !known(u.manager))) u.manager.clear();
    } else {
        // Manager from leaders: the first leader of the primary department other than the user,
        // else of the nearest ancestor with one (user/list has no manager_userid; docs/agent.md).
        // Every leader left is known (above).
        const auto kept = [](const std::string&) { return true; };
        for (auto& [userid, u] : snapshot.users)
            u.manager = leader_manager(snapshot, userid, u.primary_department, kept);
    }
}

namespace {

// Which fetched departments are synced, and which are unknown (under a failed one).
struct DepartmentSelection {
    std::set<std::int64_t> kept;
    std::set<std::int64_t> unknown;
    std::set<std::int64_t> tops;
    bool include_all = false;
};

DepartmentSelection select_departments(const FetchedOrg& fetched, const Mapping& mapping) {
    DepartmentSelection sel;
    // Which fetched departments are synced: the include subtrees (default: everything under
    // the root), minus the exclude subtrees. Departments under a failed one are unknown.
    std::set<std::int64_t>& kept = sel.kept;
    std::set<std::int64_t>& unknown = sel.unknown;
    std::vector<std::int64_t> starts = mapping.include_departments();
    sel.include_all = starts.empty();
    const bool include_all = sel.include_all;
    if (include_all) starts.push_back(fetched.root_id);
    sel.tops = std::set<std::int64_t>(starts.begin(), starts.end());
    const std::set<std::int64_t>& tops = sel.tops;
    // Walk the whole fetched tree once from the root, tracking whether we are inside an include.
    std::deque<std::pair<std::int64_t, bool>> walk{{fetched.root_id, include_all || tops.count(fetched.root_id) > 0}};
    std::set<std::int64_t> visited;
    while (!walk.empty()) {
        auto [id, inside] = walk.front();
        walk.pop_front();
        if (!visited.insert(id).second) continue;
        if (mapping.exclude_departments().count(id)) continue;
        inside = inside || tops.count(id) > 0;
        const bool failed = fetched.failed_departments.count(id) > 0;
        if (failed) unknown.insert(id);
        if (inside && !failed && fetched.departments.count(id)) kept.insert(id);
        auto ch = fetched.children.find(id);
        if (ch == fetched.children.end()) continue;
        for (auto c : ch->second) {
            if (failed) unknown.insert(c);
            walk.push_back({c, inside});
        }
    }
    // Everything below an unknown department is unknown too.
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto& [id, kids] : fetched.children)
            if (unknown.count(id))
                for (auto c : kids)
                    if (unknown.insert(c).second) grew = true;
    }
    for (auto id : unknown) kept.erase(id);
    return sel;
}

void add_departments(const FetchedOrg& fetched, const Mapping& mapping, const DepartmentSelection& sel,
                     DesiredOrg& out) {
    for (auto id : sel.kept) {
        const auto& d = fetched.departments.at(id);
        OrgDepartment od = mapping.map_department(d);
        if (id != fetched.root_id && !(sel.tops.count(id) && !sel.include_all)) {
            // The parent is kept unless this is the top of an include subtree.
            od.parent_external_id = std::to_string(d.parent_id);
        }
        if (!sel.include_all && sel.tops.count(id)) od.parent_external_id.clear();
        if (fetched.leaders_from_pages) {
            auto pl = fetched.page_leaders.find(id);
            if (pl != fetched.page_leaders.end()) od.leaders = pl->second;
        } else {
            od.leaders = d.manager_userids;
        }
        out.snapshot.departments.emplace(od.external_id, std::move(od));
    }
}

// A user's memberships in kept departments; `frozen` is set when one is in an unknown department.
std::vector<Membership> user_places(const dingtalk::MergedUser& m, const DepartmentSelection& sel, bool& frozen) {
    for (auto dept : m.item.dept_id_list)
        if (sel.unknown.count(dept)) frozen = true;
    return user_memberships(m, [&](std::int64_t dept) { return sel.kept.count(dept) > 0; });
}

// `drain`: erase each user from fetched.users once mapped; otherwise `fetched` is not modified.
DesiredOrg build(FetchedOrg& fetched, const Mapping& mapping, bool drain) {
    DesiredOrg out;
    const DepartmentSelection sel = select_departments(fetched, mapping);
    for (auto id : sel.unknown) out.frozen_departments.insert(std::to_string(id));
    add_departments(fetched, mapping, sel, out);

    // Read before draining: the leader check below needs to know whether the read was complete.
    const bool trust_all = !fetched.complete();
    // In userid order, as before the users were hashed: skip records come out in that order.
    using UserIt = decltype(fetched.users)::iterator;
    std::vector<UserIt> by_id;
    by_id.reserve(fetched.users.size());
    for (auto it = fetched.users.begin(); it != fetched.users.end(); ++it) by_id.push_back(it);
    std::sort(by_id.begin(), by_id.end(), [](const UserIt& a, const UserIt& b) { return a->first < b->first; });
    for (std::size_t k = 0; k < by_id.size(); ++k) {
        // Erasing one element leaves the other iterators valid.
        struct Drain {
            FetchedOrg& f;
            UserIt it;
            bool on;
            ~Drain() {
                if (on) f.users.erase(it);
            }
        } drain_after{fetched, by_id[k], drain};
        const UserIt it = by_id[k];
        const std::string& userid = it->first;
        const dingtalk::MergedUser m = it->second.merged();  // unpacked for this user only
        bool frozen = false;
        std::vector<Membership> places = user_places(m, sel, frozen);
        if (frozen || fetched.failed_users.count(userid)) {
            out.frozen_users.insert(userid);
            continue;
        }
        if (places.empty()) continue;
        if (mapping.skip_user(m.item)) {
            out.skipped.push_back({"user", userid, "skipped by mapping sync.skip_users"});
            continue;
        }
        OrgUser u = mapping.map_user(m.item);
        if (mapping.manager_source() == ManagerSource::dingtalk) u.manager = m.manager_userid;
        u.departments = std::move(places);
        u.primary_department = u.departments.front().department;
        out.snapshot.users.emplace(userid, std::move(u));
    }
    derive_managers(out.snapshot, out.frozen_users, trust_all, mapping.manager_source());
    return out;
}

}  // namespace

DesiredOrg build_desired(const FetchedOrg& fetched, const Mapping& mapping) {
    return build(const_cast<FetchedOrg&>(fetched), mapping, false);  // drain=false never modifies it
}

DesiredOrg build_desired(FetchedOrg&& fetched, const Mapping& mapping) { return build(fetched, mapping, true); }

}  // namespace dingbridge::agent
