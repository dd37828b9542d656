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
        case ChangeKind::create_department: return "create_department";
        case ChangeKind::update_department: return "update_department";
        case ChangeKind::create_user: return "create_user";
        case ChangeKind::update_user: return "update_user";
        case ChangeKind::disable_user: return "disable_user";
        case ChangeKind::delete_user: return "delete_user";
        case ChangeKind::delete_department: return "delete_department";
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
            dept_changes.push_back({depth_of(desired.departments, id),
                                    Change{ChangeKind::create_department, id, &d, nullptr, "new"}});
        } else if (!(it->second == d)) {
            dept_changes.push_back({depth_of(desired.departments, id),
                                    Change{ChangeKind::update_department, id, &d, nullptr, dept_diff(it->second, d)}});
        }
    }
    std::stable_sort(dept_changes.begin(), dept_changes.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [depth, c] : dept_changes) {
        if (c.kind == ChangeKind::create_department) ++plan.counts.create_department;
        else ++plan.counts.update_department;
        plan.changes.push_back(std::move(c));
    }

    // ---- removals that are due (computed first: they free unique values only when deleted) ----
    std::vector<Change> user_removals;
    std::set<std::string> deleted_users;
    int suppressed = 0;
    for (const auto& [id, u] : current.users) {
        if (desired.users.count(id) || options.frozen_users.count(id)) continue;
        if (!options.allow_removals) {
            ++suppressed;
            continue;
        }
        if (options.delete_removed_users) {
            user_removals.push_back(Change{ChangeKind::delete_user, id, nullptr, &u, "no longer in DingTalk"});
            deleted_users.insert(id);
        } else {
            user_removals.push_back(Change{ChangeKind::disable_user, id, nullptr, &u, "no longer in DingTalk"});
        }
    }
    for (const auto& [id, removed_at] : current.removed_users) {
        if (desired.users.count(id)) continue;  // came back: handled as an update/create below
        if (!options.allow_removals) continue;
        if (options.delete_removed_users ||
            (options.delete_disabled_before > 0 && removed_at > 0 && removed_at < options.delete_disabled_before)) {
            user_removals.push_back(Change{ChangeKind::delete_user, id, nullptr, nullptr,
                                           options.delete_removed_users ? "removed earlier; action is delete"
                                                                        : "disabled longer than delete_after"});
            deleted_users.insert(id);
        }
    }

    // ---- users: creates and updates, with unique-field conflicts skipped ----
    // Claims: values held in the target by users that stay there (not deleted by this plan).
    // Views into `desired`/`current`, which outlive this function: no copy per user and field.
    std::unordered_map<std::string_view, std::string_view> claims[3];  // username, email, phone -> holder
    for (auto& c : claims) c.reserve(desired.users.size() + current.users.size());
    auto values = [](const OrgUser& u) { return std::array<const std::string*, 3>{&u.username, &u.email, &u.phone}; };
    static const char* kFieldNames[3] = {"username", "email", "phone"};
    for (const auto& [id, u] : current.users) {
        if (desired.users.count(id) || deleted_users.count(id)) continue;
        auto v = values(u);
        for (int i = 0; i < 3; ++i)
            if (!v[i]->empty()) claims[i].emplace(*v[i], id);
    }
    // Users already in the target claim first, so that a newcomer never takes a value away.
    std::vector<const OrgUser*> order;
    for (const auto& [id, u] : desired.users)
        if (current.users.count(id)) order.push_back(&u);
    for (const auto& [id, u] : desired.users)
        if (!current.users.count(id)) order.push_back(&u);
    for (const OrgUser* u : order) {
        const std::string& id = u->external_id;
        if (options.frozen_users.count(id)) continue;
        auto v = values(*u);
        std::string conflict;
        for (int i = 0; i < 3 && conflict.empty(); ++i) {
            if (v[i]->empty()) continue;
            auto it = claims[i].find(*v[i]);
            if (it != claims[i].end() && it->second != id)
                conflict = std::string(kFieldNames[i]) + " '" + *v[i] + "' is already used by user " +
                           std::string(it->second);
        }
        if (!conflict.empty()) {
            plan.skipped.push_back({"user", id, conflict});
            continue;
        }
        for (int i = 0; i < 3; ++i)
            if (!v[i]->empty()) claims[i].emplace(*v[i], id);
        auto it = current.users.find(id);
        if (it == current.users.end()) {
            bool was_removed = current.removed_users.count(id) > 0;
            plan.changes.push_back(Change{ChangeKind::create_user, id, nullptr, u, was_removed ? "back in DingTalk" : "new"});
            ++plan.counts.create_user;
        } else if (!(it->second == *u)) {
            plan.changes.push_back(Change{ChangeKind::update_user, id, nullptr, u, user_diff(it->second, *u)});
            ++plan.counts.update_user;
        }
    }
    for (auto& c : user_removals) {
        if (c.kind == ChangeKind::delete_user) ++plan.counts.delete_user;
        else ++plan.counts.disable_user;
        plan.changes.push_back(std::move(c));
    }

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
            problems.push_back("department " + id + " names a parent " + d.parent_external_id + " that was not fetched");
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
