#include "agent/org/plan.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string_view>
#include <unordered_map>

namespace dingbridge::agent {

const char* change_kind_name(ChangeKind kind) {
    switch (kind) {
        case ChangeKind::create_department:
            return "create_department";
        case ChangeKind::update_department:
            return "update_department";
        case ChangeKind::create_user:
            return "create_user";
        case ChangeKind::update_user:
            return "update_user";
        case ChangeKind::disable_user:
            return "disable_user";
        case ChangeKind::delete_user:
            return "delete_user";
        case ChangeKind::delete_department:
            return "delete_department";
    }
    return "?";
}

namespace {

int depth_of(const std::map<std::string, OrgDepartment>& depts, const std::string& id) {
    int depth = 0;
    std::string cur = id;
    while (depth <= static_cast<int>(depts.size())) {
        auto it = depts.find(cur);
        if (it == depts.end() || it->second.parent_external_id.empty()) break;
        cur = it->second.parent_external_id;
        ++depth;
    }
    return depth;
}

std::string dept_diff(const OrgDepartment& a, const OrgDepartment& b) {
    std::string s;
    auto add = [&](const char* f) { s += (s.empty() ? "" : ", ") + std::string(f); };
    if (a.name != b.name) add("name");
    if (a.parent_external_id != b.parent_external_id) add("parent");
    if (a.order != b.order) add("order");
    if (a.leaders != b.leaders) add("leaders");
    if (a.description != b.description) add("description");
    if (a.custom != b.custom) add("custom");
    return s;
}

std::string user_diff(const OrgUser& a, const OrgUser& b) {
    std::string s;
    auto add = [&](const char* f) { s += (s.empty() ? "" : ", ") + std::string(f); };
    if (a.union_id != b.union_id) add("union_id");
    if (a.username != b.username) add("username");
    if (a.display_name != b.display_name) add("display_name");
    if (a.email != b.email) add("email");
    if (a.phone != b.phone) add("phone");
    if (a.employee_number != b.employee_number) add("employee_number");
    if (a.title != b.title) add("title");
    if (a.departments != b.departments) add("departments");
    if (a.primary_department != b.primary_department) add("primary_department");
    if (a.manager != b.manager) add("manager");
    if (a.active != b.active) add("active");
    if (a.avatar_url != b.avatar_url) add("avatar_url");
    if (a.hired_at != b.hired_at) add("hired_at");
    if (a.custom != b.custom) add("custom");
    return s;
}

}  // namespace

SyncPlan make_plan(const OrgSnapshot& desired, const OrgSnapshot& current, const PlanOptions& options) {
    SyncPlan plan;
    // ---- departments: creates and updates, parents first ----
    std::vector<std::pair<int, Change>> dept_changes;
    for (const auto& [id, d] : desired.departments) {
        if (options.frozen_departments.count(id)) continue;
        auto it = current.departments.find(id);
        if (it == current.departments.end()) {
            dept_changes.push_back(
                {depth_of(desired.departments, id), Change{ChangeKind::create_department, id, &d, nullptr, "new"}});
        } else if (!(it->second == d)) {
            dept_changes.push_back({depth_of(desired.departments, id),
                                    Change{ChangeKind::update_department, id, &d, nullptr, dept_diff(it->second, d)}});
        }
    }
    std::stable_sort(dept_changes.begin(), dept_changes.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [depth, c] : dept_changes) {
        if (c.kind == ChangeKind::create_department)
            ++plan.counts.create_department;
        else
            ++plan.counts.update_department;
        plan.changes.push_back(std::move(c));
    }

    // ---- users ----
    // Removals that are due. Deleted rows free their values (deletions are applied first).
    std::vector<Change> deletions, disables;
    std::set<std::string> deleted_users;
    std::vector<const OrgUser*> disabled_rows;  // current users disabled by this plan
    int suppressed = 0;
    for (const auto& [id, u] : current.users) {
        if (desired.users.count(id) || options.frozen_users.count(id)) continue;
        if (!options.allow_removals) {
            ++suppressed;
            continue;
        }
        if (options.delete_removed_users) {
            deletions.push_back(Change{ChangeKind::delete_user, id, nullptr, nullptr, "no longer in DingTalk"});
            deleted_users.insert(id);
        } else {
            disabled_rows.push_back(&u);
        }
    }
    for (const auto& [id, removed_at] : current.removed_users) {
        if (desired.users.count(id)) continue;  // came back: handled as an update/create below
        if (!options.allow_removals) continue;
        if (options.delete_removed_users ||
            (options.delete_disabled_before > 0 && removed_at > 0 && removed_at < options.delete_disabled_before)) {
            deletions.push_back(Change{ChangeKind::delete_user, id, nullptr, nullptr,
                                       options.delete_removed_users ? "removed earlier; action is delete"
                                                                    : "disabled longer than delete_after"});
            deleted_users.insert(id);
        }
    }

    // Final unique values. Claims: value -> the row that holds it once the plan is applied. Views
    // into `desired`/`current`/`plan.staged`, which outlive this function.
    using Claims = std::unordered_map<std::string_view, std::string_view>;
    Claims claims[3];  // username, email, phone
    auto values = [](const OrgUser& u) { return std::array<const std::string*, 3>{&u.username, &u.email, &u.phone}; };
    static const char* kFieldNames[3] = {"username", "email", "phone"};
    auto clear_value = [](OrgUser& u, int i) {
        if (i == 0)
            u.username.clear();
        else if (i == 1)
            u.email.clear();
        else
            u.phone.clear();
    };
    // Existing users first (their unchanged values before anything else), so that a newcomer
    // never takes a value away from the user who holds it.
    std::vector<const OrgUser*> order;
    order.reserve(desired.users.size());
    for (const auto& [id, u] : desired.users)
        if (current.users.count(id)) order.push_back(&u);
    for (const auto& [id, u] : desired.users)
        if (!current.users.count(id)) order.push_back(&u);
    // skip_user: an existing user left out keeps its current values; recompute until stable.
    std::set<std::string_view> kept_as_is;
    std::unordered_map<std::string_view, const OrgUser*> final_user;  // id -> state to write
    std::vector<SkippedItem> conflicts, skipped;
    for (bool again = true; again;) {
        again = false;
        for (auto& c : claims) {
            c.clear();
            c.reserve(desired.users.size() + current.users.size());
        }
        final_user.clear();
        conflicts.clear();
        skipped.clear();
        plan.staged.clear();
        auto hold_current = [&](std::string_view id) {
            auto it = current.users.find(std::string(id));
            if (it == current.users.end()) return;
            auto v = values(it->second);
            for (int i = 0; i < 3; ++i)
                if (!v[i]->empty()) claims[i].emplace(*v[i], it->first);
        };
        for (const auto& id : options.frozen_users) hold_current(id);
        for (auto id : kept_as_is) hold_current(id);
        for (const OrgUser* u : order) {
            const std::string& id = u->external_id;
            if (options.frozen_users.count(id) || kept_as_is.count(id)) continue;
            auto cur = current.users.find(id);
            if (cur == current.users.end()) break;  // existing users come first
            auto v = values(*u);
            auto cv = values(cur->second);
            for (int i = 0; i < 3; ++i)
                if (!v[i]->empty() && *v[i] == *cv[i]) claims[i].emplace(*v[i], cur->first);
        }
        for (const OrgUser* u : order) {
            const std::string& id = u->external_id;
            if (options.frozen_users.count(id) || kept_as_is.count(id)) continue;
            auto v = values(*u);
            std::string reason;
            OrgUser* copy = nullptr;
            for (int i = 0; i < 3; ++i) {
                if (v[i]->empty()) continue;
                auto it = claims[i].find(*v[i]);
                if (it == claims[i].end() || it->second == id) continue;
                std::string why =
                    std::string(kFieldNames[i]) + " '" + *v[i] + "' is already used by user " + std::string(it->second);
                if (options.conflict_policy == ConflictPolicy::skip_user) {
                    reason = why;
                    break;
                }
                if (!copy) {
                    plan.staged.push_back(std::make_unique<OrgUser>(*u));
                    copy = plan.staged.back().get();
                }
                clear_value(*copy, i);
                conflicts.push_back({"user", id, why + "; " + kFieldNames[i] + " left empty"});
            }
            if (!reason.empty()) {
                if (current.users.count(id)) {
                    // Its current row stays, and so do its values: recompute once this pass is done.
                    kept_as_is.insert(u->external_id);
                    again = true;
                    continue;
                }
                skipped.push_back({"user", id, reason});
                continue;
            }
            const OrgUser& fin = copy ? *copy : *u;
            auto fv = values(fin);
            for (int i = 0; i < 3; ++i)
                if (!fv[i]->empty()) claims[i].emplace(*fv[i], fin.external_id);
            final_user.emplace(u->external_id, &fin);
        }
    }
    for (auto id : kept_as_is)
        skipped.push_back({"user", std::string(id),
                           "a unique value conflicts (sync.conflict_policy: skip_user); "
                           "the user is left as it is in the target"});
    for (auto& s : skipped) plan.skipped.push_back(std::move(s));
    plan.conflicts = std::move(conflicts);

    // Which fields a row must give up before the others are written.
    auto releases = [&](const OrgUser& row) {
        std::array<bool, 3> r{false, false, false};
        auto v = values(row);
        for (int i = 0; i < 3; ++i) {
            if (v[i]->empty()) continue;
            auto it = claims[i].find(*v[i]);
            r[i] = it != claims[i].end() && it->second != row.external_id;
        }
        return r;
    };
    auto staged_copy = [&](const OrgUser& row, const std::array<bool, 3>& rel, bool removed) {
        plan.staged.push_back(std::make_unique<OrgUser>(row));
        OrgUser* s = plan.staged.back().get();
        for (int i = 0; i < 3; ++i)
            if (rel[i]) clear_value(*s, i);
        if (removed) {
            s->departments.clear();
            s->active = false;
        }
        return s;
    };
    auto released_names = [&](const std::array<bool, 3>& rel) {
        std::string n;
        for (int i = 0; i < 3; ++i)
            if (rel[i]) n += (n.empty() ? "" : ", ") + std::string(kFieldNames[i]);
        return n;
    };
    std::vector<Change> release_changes, late_changes;
    // Active users that give a value to another user: written first with the field empty.
    for (const auto& [id, row] : current.users) {
        if (!final_user.count(id)) continue;  // frozen, kept as is, or removed (below)
        auto rel = releases(row);
        if (!rel[0] && !rel[1] && !rel[2]) continue;
        release_changes.push_back(Change{ChangeKind::update_user, id, nullptr, staged_copy(row, rel, false),
                                         "releases " + released_names(rel) + " for another user (staged)"});
        ++plan.counts.update_user;
    }
    // Users disabled now: no memberships; values another user takes are released first.
    for (const OrgUser* row : disabled_rows) {
        auto rel = releases(*row);
        bool early = rel[0] || rel[1] || rel[2];
        Change c{ChangeKind::disable_user, row->external_id, nullptr, staged_copy(*row, rel, true),
                 "no longer in DingTalk"};
        if (early) c.detail += "; releases " + released_names(rel);
        (early ? release_changes : disables).push_back(std::move(c));
        ++plan.counts.disable_user;
    }
    // Rows removed earlier: they give values up to active users, and keep no memberships.
    for (const auto& [id, row] : current.removed_user_rows) {
        if (desired.users.count(id) || deleted_users.count(id) || !current.removed_users.count(id)) continue;
        auto rel = releases(row);
        bool early = rel[0] || rel[1] || rel[2];
        if (!early && row.departments.empty()) continue;
        Change c{ChangeKind::disable_user, id, nullptr, staged_copy(row, rel, true),
                 early ? "removed earlier; releases " + released_names(rel)
                       : std::string("removed earlier; drops its department memberships")};
        (early ? release_changes : late_changes).push_back(std::move(c));
        ++plan.counts.update_user;  // not a removal: the safeguard does not count it
    }

    for (auto& c : deletions) {
        ++plan.counts.delete_user;
        plan.changes.push_back(std::move(c));
    }
    for (auto& c : release_changes) plan.changes.push_back(std::move(c));
    for (const OrgUser* u : order) {
        auto f = final_user.find(u->external_id);
        if (f == final_user.end()) continue;
        const OrgUser& fin = *f->second;
        const std::string& id = u->external_id;
        auto it = current.users.find(id);
        if (it == current.users.end()) {
            bool was_removed = current.removed_users.count(id) > 0;
            plan.changes.push_back(
                Change{ChangeKind::create_user, id, nullptr, &fin, was_removed ? "back in DingTalk" : "new"});
            ++plan.counts.create_user;
        } else if (!(it->second == fin)) {
            plan.changes.push_back(Change{ChangeKind::update_user, id, nullptr, &fin, user_diff(it->second, fin)});
            ++plan.counts.update_user;
        }
    }
    for (auto& c : disables) plan.changes.push_back(std::move(c));
    for (auto& c : late_changes) plan.changes.push_back(std::move(c));

    // ---- department removals, children first ----
    std::vector<std::pair<int, Change>> dept_removals;
    for (const auto& [id, d] : current.departments) {
        if (desired.departments.count(id) || options.frozen_departments.count(id)) continue;
        if (!options.allow_removals) {
            ++suppressed;
            continue;
        }
        dept_removals.push_back({depth_of(current.departments, id),
                                 Change{ChangeKind::delete_department, id, &d, nullptr, "no longer in DingTalk"}});
    }
    std::stable_sort(dept_removals.begin(), dept_removals.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (auto& [depth, c] : dept_removals) {
        ++plan.counts.delete_department;
        plan.changes.push_back(std::move(c));
    }
    plan.suppressed_removals = suppressed;
    plan.removals_suppressed = suppressed > 0;
    return plan;
}

std::optional<DeleteLimit> DeleteLimit::parse(const std::string& text) {
    if (text.empty()) return std::nullopt;
    DeleteLimit l;
    std::string num = text;
    if (num.back() == '%') {
        l.percent = true;
        num.pop_back();
    }
    char* end = nullptr;
    l.value = std::strtod(num.c_str(), &end);
    if (num.empty() || *end != 0 || l.value < 0 || std::isnan(l.value) || (l.percent && l.value > 100))
        return std::nullopt;
    return l;
}

std::optional<std::string> DeleteLimit::exceeded(int removals, int existing) const {
    if (removals == 0) return std::nullopt;
    double limit = percent ? std::floor(existing * value / 100.0) : value;
    if (removals <= limit) return std::nullopt;
    std::string what = percent ? std::to_string(static_cast<int>(value)) + "% of the " + std::to_string(existing) +
                                     " objects in the target (" + std::to_string(static_cast<int>(limit)) + ")"
                               : std::to_string(static_cast<int>(limit));
    return "the plan removes " + std::to_string(removals) + " objects, more than safeguard.max_deletes allows (" +
           what + "); nothing was applied. Check the DingTalk side, then rerun with --force to apply it";
}

std::vector<std::string> validate_tree(const std::map<std::string, OrgDepartment>& departments,
                                       const std::string& root_external_id) {
    std::vector<std::string> problems;
    for (const auto& [id, d] : departments) {
        if (id == root_external_id) continue;
        if (d.parent_external_id.empty()) {
            problems.push_back("department " + id + " has no parent");
            continue;
        }
        if (!departments.count(d.parent_external_id)) {
            problems.push_back("department " + id + " names a parent " + d.parent_external_id +
                               " that was not fetched");
            continue;
        }
        // Walk up: reaching the root within |departments| steps, else a cycle.
        std::string cur = id;
        size_t steps = 0;
        while (cur != root_external_id && steps <= departments.size()) {
            auto it = departments.find(cur);
            if (it == departments.end() || it->second.parent_external_id.empty()) break;
            cur = it->second.parent_external_id;
            ++steps;
        }
        if (steps > departments.size()) problems.push_back("department " + id + " is in a parent cycle");
    }
    return problems;
}

}  // namespace dingbridge::agent
