#include "agent/org/plan.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <unordered_map>

#include "shared/enum_table.h"
#include "shared/match_key.h"

namespace dingbridge::agent {

constexpr auto kChangeKindNames =
    enum_table<ChangeKind::delete_department>({"create_department", "update_department", "create_user", "update_user",
                                               "disable_user", "delete_user", "delete_department"});

const char* change_kind_name(ChangeKind kind) { return kChangeKindNames.get(kind, "?"); }

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

// The names of the `fields` (name, member pointer) in which `a` and `b` differ, comma-separated.
template <class Record, class... Members>
std::string changed_fields(const Record& a, const Record& b, const std::pair<const char*, Members>&... fields) {
    std::string s;
    auto add = [&](const char* f) { s += (s.empty() ? "" : ", ") + std::string(f); };
    ((a.*fields.second != b.*fields.second ? add(fields.first) : void()), ...);
    return s;
}

std::string dept_diff(const OrgDepartment& a, const OrgDepartment& b) {
    using D = OrgDepartment;
    return changed_fields(a, b, std::pair{"name", &D::name}, std::pair{"parent", &D::parent_external_id},
                          std::pair{"order", &D::order}, std::pair{"leaders", &D::leaders},
                          std::pair{"description", &D::description}, std::pair{"custom", &D::custom});
}

std::string user_diff(const OrgUser& a, const OrgUser& b) {
    using U = OrgUser;
    return changed_fields(a, b, std::pair{"union_id", &U::union_id}, std::pair{"username", &U::username},
                          std::pair{"display_name", &U::display_name}, std::pair{"email", &U::email},
                          std::pair{"phone", &U::phone}, std::pair{"employee_number", &U::employee_number},
                          std::pair{"title", &U::title}, std::pair{"departments", &U::departments},
                          std::pair{"primary_department", &U::primary_department}, std::pair{"manager", &U::manager},
                          std::pair{"active", &U::active}, std::pair{"avatar_url", &U::avatar_url},
                          std::pair{"hired_at", &U::hired_at}, std::pair{"custom", &U::custom});
}

}  // namespace

namespace {

constexpr const char* kUniqueFieldNames[3] = {"username", "email", "phone"};
using Releases = std::array<bool, 3>;  // per unique field: the row must give its value up

std::array<const SmallString*, 3> unique_values(const OrgUser& u) { return {&u.username, &u.email, &u.phone}; }

void clear_unique_value(OrgUser& u, int i) {
    if (i == 0)
        u.username.clear();
    else if (i == 1)
        u.email.clear();
    else
        u.phone.clear();
}

// Who holds each value of one unique field once the plan is applied: value -> row. Open
// addressing with linear probing over pointers to the rows (the value is the row's field, the
// holder its external_id), with each slot's 32-bit hash beside it: 12 bytes a slot, at most 80 %
// full. An unordered_map of views took a 48-byte node plus a bucket per value: for 100,000 users
// the three tables were ~17 MiB of a first sync's peak; these take ~4.5.
// The rows must outlive the table (the snapshots given to make_plan, the plan's staged copies).
class ClaimTable {
public:
    explicit ClaimTable(SmallString OrgUser::*field) : field_(field) {}
    // Values match by `key` (set before the first claim).
    void match_by(std::string (*key)(std::string_view)) { key_ = key; }

    void clear() {
        std::fill(rows_.begin(), rows_.end(), nullptr);
        size_ = 0;
    }
    void release() {
        rows_ = {};
        tags_ = {};
        size_ = 0;
    }
    // `row` claims its (non-empty) value unless another row already did.
    void claim(const OrgUser& row) {
        const std::string_view v = row.*field_;
        if ((size_ + 1) * 5 > rows_.size() * 4) grow();
        const std::uint32_t h = hash(v);
        for (std::size_t i = h & mask();; i = (i + 1) & mask()) {
            if (!rows_[i]) {
                rows_[i] = &row;
                tags_[i] = h;
                ++size_;
                return;
            }
            if (tags_[i] == h && same(rows_[i]->*field_, v)) return;
        }
    }
    // The row holding `v`, or nullptr.
    const OrgUser* holder(std::string_view v) const {
        if (rows_.empty()) return nullptr;
        const std::uint32_t h = hash(v);
        for (std::size_t i = h & mask(); rows_[i]; i = (i + 1) & mask())
            if (tags_[i] == h && same(rows_[i]->*field_, v)) return rows_[i];
        return nullptr;
    }

private:
    std::uint32_t hash(std::string_view v) const {
        auto h = key_ ? std::hash<std::string>{}(key_(v)) : std::hash<std::string_view>{}(v);
        return static_cast<std::uint32_t>(h ^ (h >> 32));
    }
    bool same(std::string_view a, std::string_view b) const { return a == b || (key_ && key_(a) == key_(b)); }
    std::size_t mask() const { return rows_.size() - 1; }
    void grow() {
        std::vector<const OrgUser*> rows(std::max<std::size_t>(64, rows_.size() * 2), nullptr);
        std::vector<std::uint32_t> tags(rows.size());
        const std::size_t m = rows.size() - 1;
        for (std::size_t k = 0; k < rows_.size(); ++k) {
            if (!rows_[k]) continue;
            std::size_t i = tags_[k] & m;
            while (rows[i]) i = (i + 1) & m;
            rows[i] = rows_[k];
            tags[i] = tags_[k];
        }
        rows_ = std::move(rows);
        tags_ = std::move(tags);
    }

    SmallString OrgUser::*field_;
    std::string (*key_)(std::string_view) = nullptr;
    std::vector<const OrgUser*> rows_;  // a power of two long, or empty
    std::vector<std::uint32_t> tags_;
    std::size_t size_ = 0;
};

bool any(const Releases& r) { return r[0] || r[1] || r[2]; }

std::string released_names(const Releases& rel) {
    std::string n;
    for (int i = 0; i < 3; ++i)
        if (rel[i]) n += (n.empty() ? "" : ", ") + std::string(kUniqueFieldNames[i]);
    return n;
}

// One make_plan call, stage by stage (the order of the resulting changes is described in plan.h).
class Planner {
public:
    Planner(const OrgSnapshot& desired, const OrgSnapshot& current, const PlanOptions& options)
        : desired_(desired), current_(current), options_(options) {
        if (options.username_key) claims_[0].match_by(options.username_key);
    }

    SyncPlan run() {
        plan_department_writes();
        collect_user_removals();
        order_users();
        claim_unique_values();
        stage_releases();
        for (auto& c : claims_) c.release();  // settled: their memory goes to the changes below
        emit_user_changes();
        plan_department_removals();
        plan_.suppressed_removals = suppressed_;
        plan_.removals_suppressed = suppressed_ > 0;
        return std::move(plan_);
    }

private:
    using UserEntry = std::pair<const std::string, OrgUser>;

    // The target's row of an active user, or nullptr. A user the target was read as equal to the
    // desired org (OrgSnapshot::users_as_desired) is its desired row.
    const UserEntry* current_user(const std::string& id) const {
        if (auto it = current_.users.find(id); it != current_.users.end()) return &*it;
        if (!current_.user_as_desired(id)) return nullptr;
        auto d = desired_.users.find(id);
        return d != desired_.users.end() ? &*d : nullptr;
    }
    bool exists(const std::string& id) const { return current_user(id) != nullptr; }

    // Every active user of the target in external id order, with those read as equal to the
    // desired org.
    std::vector<const UserEntry*> current_users() const {
        std::vector<const UserEntry*> all;
        all.reserve(current_.user_count());
        for (const auto& e : current_.users) all.push_back(&e);
        for (const auto& id : current_.users_as_desired)
            if (auto d = desired_.users.find(id); d != desired_.users.end()) all.push_back(&*d);
        if (!current_.users_as_desired.empty())
            std::sort(all.begin(), all.end(),
                      [](const UserEntry* a, const UserEntry* b) { return a->first < b->first; });
        return all;
    }

    // ---- departments: creates and updates, parents first ----
    void plan_department_writes() {
        std::vector<std::pair<int, Change>> dept_changes;
        for (const auto& [id, d] : desired_.departments) {
            if (options_.frozen_departments.count(id)) continue;
            auto it = current_.departments.find(id);
            if (it == current_.departments.end())
                dept_changes.push_back({depth_of(desired_.departments, id),
                                        Change{ChangeKind::create_department, id, &d, nullptr, "new"}});
            else if (!(it->second == d))
                dept_changes.push_back(
                    {depth_of(desired_.departments, id),
                     Change{ChangeKind::update_department, id, &d, nullptr, dept_diff(it->second, d)}});
        }
        std::stable_sort(dept_changes.begin(), dept_changes.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& [depth, c] : dept_changes) {
            if (c.kind == ChangeKind::create_department)
                ++plan_.counts.create_department;
            else
                ++plan_.counts.update_department;
            plan_.changes.push_back(std::move(c));
        }
    }

    // Removals that are due. Deleted rows free their values (deletions are applied first).
    void collect_user_removals() {
        for (const auto& [id, u] : current_.users) {
            if (desired_.users.count(id) || options_.frozen_users.count(id)) continue;
            if (!options_.allow_removals) {
                ++suppressed_;
                continue;
            }
            if (options_.delete_removed_users) {
                deletions_.push_back(Change{ChangeKind::delete_user, id, nullptr, nullptr, "no longer in DingTalk"});
                deleted_users_.insert(id);
            } else {
                disabled_rows_.push_back(&u);
            }
        }
        for (const auto& [id, removed_at] : current_.removed_users) {
            if (desired_.users.count(id)) continue;  // came back: handled as an update/create below
            if (!options_.allow_removals) continue;
            if (options_.delete_removed_users || (options_.delete_disabled_before > 0 && removed_at > 0 &&
                                                  removed_at < options_.delete_disabled_before)) {
                deletions_.push_back(Change{ChangeKind::delete_user, id, nullptr, nullptr,
                                            options_.delete_removed_users ? "removed earlier; action is delete"
                                                                          : "disabled longer than delete_after"});
                deleted_users_.insert(id);
            }
        }
    }

    // Existing users first (their unchanged values before anything else), so that a newcomer
    // never takes a value away from the user who holds it; each with its current row (nullptr
    // for a new user), looked up once.
    void order_users() {
        order_.reserve(desired_.users.size());
        std::vector<const OrgUser*> fresh;
        for (const auto& entry : desired_.users) {
            const UserEntry* cur = nullptr;
            if (auto it = current_.users.find(entry.first); it != current_.users.end())
                cur = &*it;
            else if (current_.user_as_desired(entry.first))
                cur = &entry;
            if (cur)
                order_.push_back({&entry.second, cur});
            else
                fresh.push_back(&entry.second);
        }
        for (const OrgUser* u : fresh) order_.push_back({u, nullptr});
    }

    // Final unique values. Claims: value -> the row that holds it once the plan is applied. Views
    // into `desired`/`current`/`plan.staged`, which outlive the plan. skip_user: an existing user
    // left out keeps its current values; recompute until stable.
    void claim_unique_values() {
        while (claim_pass()) {
        }
        std::sort(final_user_.begin(), final_user_.end());
        for (auto id : kept_as_is_)
            skipped_.push_back({"user", std::string(id),
                                "a unique value conflicts (sync.conflict_policy: skip_user); "
                                "the user is left as it is in the target"});
        for (auto& s : skipped_) plan_.skipped.push_back(std::move(s));
        plan_.conflicts = std::move(conflicts_);
    }

    void hold_current(std::string_view id) {
        const UserEntry* row = current_user(std::string(id));
        if (!row) return;
        auto v = unique_values(row->second);
        for (int i = 0; i < 3; ++i)
            if (!v[i]->empty()) claims_[i].claim(row->second);
    }

    // The state the plan writes for user `id`, or nullptr (frozen, kept as is, skipped, removed).
    const OrgUser* final_state(std::string_view id) const {
        auto it = std::lower_bound(final_user_.begin(), final_user_.end(), id,
                                   [](const auto& e, std::string_view k) { return e.first < k; });
        return it != final_user_.end() && it->first == id ? it->second : nullptr;
    }

    bool settled(const std::string& id) const { return options_.frozen_users.count(id) || kept_as_is_.count(id); }

    // One pass over the users; true when a skipped existing user means the pass must be redone.
    bool claim_pass() {
        for (auto& c : claims_) c.clear();
        final_user_.clear();
        final_user_.reserve(order_.size());
        conflicts_.clear();
        skipped_.clear();
        plan_.staged.clear();
        for (const auto& id : options_.frozen_users) hold_current(id);
        for (auto id : kept_as_is_) hold_current(id);
        for (const auto& [u, cur] : order_) {
            if (settled(u->external_id)) continue;
            if (!cur) break;  // existing users come first
            auto v = unique_values(*u);
            auto cv = unique_values(cur->second);
            for (int i = 0; i < 3; ++i)
                if (!v[i]->empty() && *v[i] == *cv[i]) claims_[i].claim(cur->second);
        }
        bool again = false;
        for (const auto& o : order_)
            if (!settled(o.first->external_id) && !claim_user(*o.first)) again = true;
        return again;
    }

    // Claims the user's values (clearing or skipping on a conflict); false when an existing
    // user is now kept as it is and the pass must be redone.
    bool claim_user(const OrgUser& u) {
        const SmallString& id = u.external_id;
        auto v = unique_values(u);
        std::string reason;
        OrgUser* copy = nullptr;
        for (int i = 0; i < 3; ++i) {
            if (v[i]->empty()) continue;
            const OrgUser* holder = claims_[i].holder(*v[i]);
            if (!holder || holder->external_id == id) continue;
            std::string why = std::string(kUniqueFieldNames[i]) + " '" + *v[i] + "' is already used by user " +
                              holder->external_id.str();
            if (options_.conflict_policy == ConflictPolicy::skip_user) {
                reason = why;
                break;
            }
            if (!copy) {
                plan_.staged.push_back(std::make_unique<OrgUser>(u));
                copy = plan_.staged.back().get();
            }
            clear_unique_value(*copy, i);
            if (options_.fill_required) options_.fill_required(*copy);
            const SmallString& now = *unique_values(*copy)[i];
            conflicts_.push_back({"user", id,
                                  why + "; " + kUniqueFieldNames[i] +
                                      (now.empty() ? std::string(" left empty")
                                                   : " written as the user's DingTalk id, '" + now.str() + "'")});
        }
        if (!reason.empty()) {
            if (exists(id)) {
                // Its current row stays, and so do its values: recompute once this pass is done.
                kept_as_is_.insert(u.external_id);
                return false;
            }
            skipped_.push_back({"user", id, reason});
            return true;
        }
        const OrgUser& fin = copy ? *copy : u;
        auto fv = unique_values(fin);
        for (int i = 0; i < 3; ++i)
            if (!fv[i]->empty()) claims_[i].claim(fin);
        final_user_.emplace_back(u.external_id.view(), &fin);
        return true;
    }

    // Which fields a row must give up before the others are written.
    Releases releases(const OrgUser& row) const {
        Releases r{false, false, false};
        auto v = unique_values(row);
        for (int i = 0; i < 3; ++i) {
            if (v[i]->empty()) continue;
            const OrgUser* holder = claims_[i].holder(*v[i]);
            r[i] = holder && holder->external_id != row.external_id;
        }
        return r;
    }

    const OrgUser* staged_copy(const OrgUser& row, const Releases& rel, bool removed) {
        plan_.staged.push_back(std::make_unique<OrgUser>(row));
        OrgUser* s = plan_.staged.back().get();
        for (int i = 0; i < 3; ++i)
            if (rel[i]) clear_unique_value(*s, i);
        if (options_.fill_required) options_.fill_required(*s);
        if (removed) {
            s->departments.clear();
            s->active = false;
        }
        return s;
    }

    void stage_releases() {
        // Active users that give a value to another user: written first with the field empty.
        for (const UserEntry* entry : current_users()) {
            const auto& [id, row] = *entry;
            if (!final_state(id)) continue;  // frozen, kept as is, or removed (below)
            auto rel = releases(row);
            if (!any(rel)) continue;
            release_changes_.push_back(Change{ChangeKind::update_user, id, nullptr, staged_copy(row, rel, false),
                                              "releases " + released_names(rel) + " for another user (staged)"});
            ++plan_.counts.update_user;
        }
        // Users disabled now: no memberships; values another user takes are released first.
        for (const OrgUser* row : disabled_rows_) {
            auto rel = releases(*row);
            Change c{ChangeKind::disable_user, row->external_id, nullptr, staged_copy(*row, rel, true),
                     "no longer in DingTalk"};
            if (any(rel)) c.detail += "; releases " + released_names(rel);
            (any(rel) ? release_changes_ : disables_).push_back(std::move(c));
            ++plan_.counts.disable_user;
        }
        // Rows removed earlier: they give values up to active users, and keep no memberships.
        for (const auto& [id, row] : current_.removed_user_rows) {
            if (desired_.users.count(id) || deleted_users_.count(id) || !current_.removed_users.count(id)) continue;
            auto rel = releases(row);
            if (!any(rel) && row.departments.empty()) continue;
            Change c{ChangeKind::disable_user, id, nullptr, staged_copy(row, rel, true),
                     any(rel) ? "removed earlier; releases " + released_names(rel)
                              : std::string("removed earlier; drops its department memberships")};
            (any(rel) ? release_changes_ : late_changes_).push_back(std::move(c));
            ++plan_.counts.update_user;  // not a removal: the safeguard does not count it
        }
    }

    // Reorders new users (indices into order_, in id order) so that a new user's new manager
    // comes first: by depth in the manager chain among them, stable (id order within a depth); a
    // manager cycle is cut where the walk meets it again. Only the order of the creates changes:
    // who keeps a contested unique value was settled in id order, and creates with settled
    // values are valid in any order.
    void managers_before_reports(std::vector<std::uint32_t>::iterator first,
                                 std::vector<std::uint32_t>::iterator last) {
        const auto n = static_cast<std::uint32_t>(last - first);
        std::unordered_map<std::string_view, std::uint32_t> index;  // id -> position in [first, last)
        index.reserve(n);
        for (std::uint32_t i = 0; i < n; ++i) index.emplace(std::string_view(order_[first[i]].first->external_id), i);
        constexpr std::uint32_t kUnknown = UINT32_MAX, kOnPath = UINT32_MAX - 1;
        std::vector<std::uint32_t> depth(n, kUnknown), path;
        for (std::uint32_t start = 0; start < n; ++start) {
            std::uint32_t i = start;
            while (depth[i] == kUnknown) {  // up the chain to a known depth, the top or a cycle
                depth[i] = kOnPath;
                path.push_back(i);
                const SmallString& m = order_[first[i]].first->manager;
                auto it = m.empty() ? index.end() : index.find(std::string_view(m));
                if (it == index.end() || depth[it->second] == kOnPath) break;
                i = it->second;
            }
            std::uint32_t d = depth[i] == kOnPath ? 0 : depth[i] + 1;  // the top or a cycle: 0
            for (auto k = path.rbegin(); k != path.rend(); ++k) depth[*k] = d++;
            path.clear();
        }
        std::vector<std::pair<std::uint32_t, std::uint32_t>> keyed(n);  // (depth, index into order_)
        for (std::uint32_t i = 0; i < n; ++i) keyed[i] = {depth[i], first[i]};
        std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (std::uint32_t i = 0; i < n; ++i) first[i] = keyed[i].second;
    }

    void emit_user_changes() {
        // Which users are written, decided once (the comparison is a user's every field), so that
        // the list is sized exactly: growing by doubling briefly held a first sync's 100,000
        // creates twice over, and a change reserved per user held 100,000 unused ones on a no-op
        // resync. Indices into order_: 4 bytes a written user.
        std::vector<std::uint32_t> written;
        for (std::size_t k = 0; k < order_.size(); ++k) {
            const auto& [u, cur] = order_[k];
            if (const OrgUser* f = final_state(u->external_id); f && (!cur || !(cur->second == *f)))
                written.push_back(static_cast<std::uint32_t>(k));
        }
        plan_.changes.reserve(plan_.changes.size() + deletions_.size() + release_changes_.size() + written.size() +
                              disables_.size() + late_changes_.size() + current_.departments.size());
        for (auto& c : deletions_) {
            ++plan_.counts.delete_user;
            plan_.changes.push_back(std::move(c));
        }
        for (auto& c : release_changes_) plan_.changes.push_back(std::move(c));
        if (options_.managers_first)  // the new users are last in order_, and so in written
            managers_before_reports(std::find_if(written.begin(), written.end(),
                                                 [&](std::uint32_t k) { return order_[k].second == nullptr; }),
                                    written.end());
        for (auto k : written) {
            const auto& [u, cur] = order_[k];
            const OrgUser& fin = *final_state(u->external_id);
            const SmallString& id = u->external_id;
            if (!cur) {
                bool was_removed = current_.removed_users.count(id) > 0;
                plan_.changes.push_back(
                    Change{ChangeKind::create_user, id, nullptr, &fin, was_removed ? "back in DingTalk" : "new"});
                ++plan_.counts.create_user;
            } else {
                plan_.changes.push_back(
                    Change{ChangeKind::update_user, id, nullptr, &fin, user_diff(cur->second, fin)});
                ++plan_.counts.update_user;
            }
        }
        for (auto& c : disables_) plan_.changes.push_back(std::move(c));
        for (auto& c : late_changes_) plan_.changes.push_back(std::move(c));
    }

    // ---- department removals, children first ----
    void plan_department_removals() {
        std::vector<std::pair<int, Change>> dept_removals;
        for (const auto& [id, d] : current_.departments) {
            if (desired_.departments.count(id) || options_.frozen_departments.count(id)) continue;
            if (!options_.allow_removals) {
                ++suppressed_;
                continue;
            }
            dept_removals.push_back({depth_of(current_.departments, id),
                                     Change{ChangeKind::delete_department, id, &d, nullptr, "no longer in DingTalk"}});
        }
        std::stable_sort(dept_removals.begin(), dept_removals.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
        for (auto& [depth, c] : dept_removals) {
            ++plan_.counts.delete_department;
            plan_.changes.push_back(std::move(c));
        }
    }

    const OrgSnapshot& desired_;
    const OrgSnapshot& current_;
    const PlanOptions& options_;
    SyncPlan plan_;
    int suppressed_ = 0;
    std::vector<Change> deletions_, disables_, release_changes_, late_changes_;
    std::set<std::string> deleted_users_;
    std::vector<const OrgUser*> disabled_rows_;                       // current users disabled by this plan
    std::vector<std::pair<const OrgUser*, const UserEntry*>> order_;  // desired user, its current row
    ClaimTable claims_[3] = {ClaimTable(&OrgUser::username), ClaimTable(&OrgUser::email), ClaimTable(&OrgUser::phone)};
    std::set<std::string_view> kept_as_is_;
    // id -> state to write, sorted by id once the claims are done (24 bytes a user; a hash map
    // took twice that).
    std::vector<std::pair<std::string_view, const OrgUser*>> final_user_;
    std::vector<SkippedItem> conflicts_, skipped_;
};

}  // namespace

SyncPlan make_plan(const OrgSnapshot& desired, const OrgSnapshot& current, const PlanOptions& options) {
    return Planner(desired, current, options).run();
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
