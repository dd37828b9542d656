#include "agent/events/patch.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "agent/sync/build.h"

namespace dingbridge::agent::events {

namespace {

std::optional<std::int64_t> to_id(const std::string& s) {
    std::int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

void keep_synced_departments(OrgSnapshot& d, const std::set<std::int64_t>& tops) {
    // Keep only departments that hang under a synced top (a moved or new department under a
    // department that is not synced is not synced either, as in a full sync).
    std::map<std::string, bool> valid;
    for (bool changed = true; changed;) {
        changed = false;
        for (const auto& [key, dep] : d.departments) {
            if (valid.count(key)) continue;
            auto id = to_id(key);
            if (id && tops.count(*id)) {
                valid[key] = true;
                changed = true;
                continue;
            }
            auto p = valid.find(dep.parent_external_id);
            if (p != valid.end()) {
                valid[key] = p->second;
                changed = true;
            } else if (dep.parent_external_id.empty() || !d.departments.count(dep.parent_external_id)) {
                valid[key] = false;
                changed = true;
            }
        }
    }
    for (auto it = d.departments.begin(); it != d.departments.end();) {
        auto v = valid.find(it->first);
        if (v == valid.end() || !v->second)
            it = d.departments.erase(it);  // unresolved = a cycle
        else
            ++it;
    }
}

void drop_departed_memberships(OrgSnapshot& d, const Mapping& mapping) {
    // Memberships in departments that left; users left with none leave too.
    for (auto it = d.users.begin(); it != d.users.end();) {
        auto& u = it->second;
        std::erase_if(u.departments, [&](const Membership& x) { return !d.departments.count(x.department); });
        if (u.departments.empty()) {
            it = d.users.erase(it);
            continue;
        }
        u.primary_department = u.departments.front().department;
        if (mapping.manager_source() == ManagerSource::leaders) u.manager.clear();
        ++it;
    }
}

}  // namespace

PatchResult patch_desired(const OrgSnapshot& current, const EventFetch& fetched, const Mapping& mapping,
                          std::int64_t root_id) {
    PatchResult out;
    OrgSnapshot& d = out.desired;
    d.departments = current.departments;
    d.users = current.users;
    const auto& includes = mapping.include_departments();
    const bool include_all = includes.empty();
    std::set<std::int64_t> tops(includes.begin(), includes.end());
    if (include_all) tops.insert(root_id);

    for (const auto& [id, detail] : fetched.departments) {
        std::string key = std::to_string(id);
        if (!detail || mapping.exclude_departments().count(id)) {
            d.departments.erase(key);
            continue;
        }
        OrgDepartment od = mapping.map_department(*detail);
        if (id == root_id || tops.count(id))
            od.parent_external_id.clear();
        else
            od.parent_external_id = std::to_string(detail->parent_id);
        od.leaders = detail->manager_userids;
        d.departments[key] = std::move(od);
    }
    keep_synced_departments(d, tops);

    for (const auto& [userid, m] : fetched.users) {
        d.users.erase(userid);
        if (!m) continue;
        std::vector<Membership> places =
            user_memberships(*m, [&](std::int64_t dept) { return d.departments.count(std::to_string(dept)) > 0; });
        if (places.empty()) continue;
        if (mapping.skip_user(m->item)) {
            out.skipped.push_back({"user", userid, "skipped by mapping sync.skip_users"});
            continue;
        }
        OrgUser u = mapping.map_user(m->item);
        if (mapping.manager_source() == ManagerSource::dingtalk) u.manager = m->manager_userid;
        u.departments = std::move(places);
        u.primary_department = u.departments.front().department;
        d.users[userid] = std::move(u);
    }
    drop_departed_memberships(d, mapping);
    derive_managers(d, {}, false, mapping.manager_source());
    return out;
}

std::vector<std::int64_t> unknown_departments(const OrgSnapshot& current, const EventFetch& fetched,
                                              const Mapping& mapping, std::int64_t root_id,
                                              const std::set<std::int64_t>& outside) {
    const auto& includes = mapping.include_departments();
    std::set<std::int64_t> out;
    auto consider = [&](std::int64_t id) {
        if (id <= 0 || fetched.departments.count(id) || outside.count(id) || mapping.exclude_departments().count(id))
            return;
        if (!current.departments.count(std::to_string(id))) out.insert(id);
    };
    for (const auto& [userid, m] : fetched.users)
        if (m)
            for (const auto& pl : m->places) consider(pl.dept_id);
    for (const auto& [id, detail] : fetched.departments) {
        // A synced top's parent is not synced: nothing to resolve above it.
        if (!detail || id == root_id || std::count(includes.begin(), includes.end(), id)) continue;
        consider(detail->parent_id);
    }
    return {out.begin(), out.end()};
}

std::vector<std::int64_t> departments_on_a_loop(const OrgSnapshot& current, const EventFetch& fetched,
                                                const Mapping& mapping, std::int64_t root_id) {
    const auto& includes = mapping.include_departments();
    const auto& excludes = mapping.exclude_departments();
    // The parent in the patched tree: as read when fetched, else as the target holds it; none
    // above a synced top, an excluded or gone department, or one neither knows.
    auto parent_of = [&](std::int64_t id) -> std::optional<std::int64_t> {
        if (id == root_id || excludes.count(id) || std::count(includes.begin(), includes.end(), id))
            return std::nullopt;
        if (const auto f = fetched.departments.find(id); f != fetched.departments.end()) {
            if (!f->second) return std::nullopt;
            return f->second->parent_id;
        }
        const auto h = current.departments.find(std::to_string(id));
        if (h == current.departments.end()) return std::nullopt;
        return to_id(h->second.parent_external_id);
    };
    std::set<std::int64_t> out, clear;  // clear: known to reach a top, a gap or a known loop
    for (const auto& [start, detail] : fetched.departments) {
        if (!detail) continue;
        std::vector<std::int64_t> walk;
        std::set<std::int64_t> seen;
        std::optional<std::int64_t> at = start;
        while (at && !clear.count(*at) && !out.count(*at) && seen.insert(*at).second) {
            walk.push_back(*at);
            at = parent_of(*at);
        }
        if (at && seen.count(*at))  // came back to itself: the walk from *at on is the loop
            out.insert(std::find(walk.begin(), walk.end(), *at), walk.end());
        for (auto id : walk)
            if (!out.count(id)) clear.insert(id);
    }
    return {out.begin(), out.end()};
}

namespace {

// The departments this batch found gone (60003), as the target's ids.
std::set<std::string> gone_departments(const EventFetch& fetched) {
    std::set<std::string> gone;
    for (const auto& [id, detail] : fetched.departments)
        if (!detail) gone.insert(std::to_string(id));
    return gone;
}

}  // namespace

std::vector<std::string> users_left_without_a_department(const OrgSnapshot& current, const EventFetch& fetched) {
    const std::set<std::string> gone = gone_departments(fetched);
    std::vector<std::string> out;
    if (gone.empty()) return out;
    for (const auto& [userid, u] : current.users) {
        if (u.departments.empty() || fetched.users.count(userid)) continue;
        if (std::all_of(u.departments.begin(), u.departments.end(),
                        [&](const Membership& m) { return gone.count(m.department.str()) > 0; }))
            out.push_back(userid);
    }
    return out;
}

std::vector<std::int64_t> departments_left_without_a_parent(const OrgSnapshot& current, const EventFetch& fetched) {
    const std::set<std::string> gone = gone_departments(fetched);
    std::vector<std::int64_t> out;
    if (gone.empty()) return out;
    for (const auto& [id, d] : current.departments)
        if (gone.count(d.parent_external_id))
            if (const auto n = to_id(id); n && !fetched.departments.count(*n)) out.push_back(*n);
    return out;
}

std::vector<std::int64_t> leader_changes(const OrgSnapshot& current, const EventFetch& fetched) {
    std::set<std::int64_t> out;
    for (const auto& [userid, m] : fetched.users) {
        if (!m) continue;  // a removed leader drops out of every leader list by itself
        std::map<std::string, bool> before, after;
        if (auto it = current.users.find(userid); it != current.users.end())
            for (const auto& x : it->second.departments) before[x.department] = x.leader;
        for (const auto& pl : m->places) after[std::to_string(pl.dept_id)] = pl.leader;
        std::set<std::string> all;
        for (auto& [k, v] : before) all.insert(k);
        for (auto& [k, v] : after) all.insert(k);
        for (const auto& k : all) {
            bool b = before.count(k) && before[k], a = after.count(k) && after[k];
            if (a == b) continue;
            auto id = to_id(k);
            if (id && !fetched.departments.count(*id)) out.insert(*id);
        }
        // A department this batch read may have been read before the user's change (the reads
        // run concurrently, a throttled one is retried later): its leader list must agree with
        // the user's flag, or both would be cached as they are and the user's next event would
        // see no change to read it for (wrong leaders and managers until a full sync).
        for (const auto& pl : m->places) {
            const auto d = fetched.departments.find(pl.dept_id);
            if (d == fetched.departments.end() || !d->second) continue;
            const auto& leaders = d->second->manager_userids;
            if ((std::find(leaders.begin(), leaders.end(), userid) != leaders.end()) != pl.leader)
                out.insert(pl.dept_id);
        }
    }
    return {out.begin(), out.end()};
}

}  // namespace dingbridge::agent::events
