#include "agent/sync/full_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/contacts_api.h"
#include "agent/dingtalk/explain.h"
#include "agent/org/plan.h"
#include "agent/sync/apply.h"
#include "agent/sync/build.h"
#include "agent/sync/fetch.h"

namespace dingbridge::agent {

namespace {

// What one full sync holds between its stages. The plan points into `desired` and `current`,
// so the three live (and stay in place) together.
struct SyncState {
    bool read_complete = true;
    bool tree_from_list = false;  // FetchedOrg::tree_from_list
    std::size_t unconfirmed = 0;  // removals DingTalk could not confirm (RemovalCheck)
    std::size_t failed_departments = 0;
    // Departments DingTalk's tree lists that include/exclude_departments leave out (the target's
    // ids): what the plan removes there is removed by the configuration, not by DingTalk.
    std::set<std::string> outside_scope;
    DesiredOrg desired;
    OrgSnapshot current;
    SyncPlan plan;
    std::string incomplete;  // why no removals were computed; empty after a complete read
};

std::string tree_problems(const std::vector<std::string>& problems) {
    std::string m = "the department tree from DingTalk is inconsistent: " + problems.front();
    if (problems.size() > 1) m += " (and " + std::to_string(problems.size() - 1) + " more)";
    return m + "; nothing was applied";
}

// What a full sync with this mapping costs in metered DingTalk calls (retries aside).
void print_call_cost(std::ostream& out, const dingtalk::ClientStats& stats) {
    std::uint64_t total = 0;
    std::string by_api;
    for (const auto& [api, n] : stats.calls_by_api) {
        total += n;
        by_api += (by_api.empty() ? "" : ", ") + api + " " + std::to_string(n);
    }
    out << "DingTalk calls for a full sync: " << total << " (" << by_api << "); this run sent " << stats.requests
        << " requests including retries\n";
}

// ---- build: map every fetched user and department, check the tree ----
Status build_stage(FetchedOrg&& fetched, const Mapping& mapping, std::int64_t root, SyncState& s) {
    if (!fetched.problems.empty()) return fail(tree_problems(fetched.problems));
    // An include the complete tree does not hold is a mistyped id (or one outside the app's
    // contact scope): synced as given, every department and user the target holds would be
    // planned as gone from DingTalk.
    if (fetched.complete())
        for (auto id : mapping.include_departments())
            if (!fetched.departments.count(id))
                return fail("sync.include_departments: department " + std::to_string(id) +
                            " is not in DingTalk's department tree (a mistyped id, or outside the app's contact "
                            "scope); nothing was applied");
    s.read_complete = fetched.complete() && fetched.failed_users.empty();
    s.failed_departments = fetched.failed_departments.size();
    s.tree_from_list = fetched.tree_from_list;
    if (!mapping.include_departments().empty() || !mapping.exclude_departments().empty()) {
        for (const auto& [parent, kids] : fetched.children)
            for (auto id : kids) s.outside_scope.insert(std::to_string(id));
        for (auto id : fetched.below_excluded) s.outside_scope.insert(std::to_string(id));
    }
    // Frees each fetched user once mapped: the raw and mapped users are never both held in full.
    s.desired = build_desired(std::move(fetched), mapping);
    for (const auto& [id, d] : s.desired.snapshot.departments) s.outside_scope.erase(id);
    fetched = FetchedOrg{};  // the rest of the raw read is no longer needed: keep peak memory down
    // Validate only the part we know (unknown subtrees are frozen, not broken).
    if (mapping.include_departments().empty()) {
        auto problems = validate_tree(s.desired.snapshot.departments, std::to_string(root));
        if (!problems.empty()) return fail(tree_problems(problems));
    }
    return {};
}

PlanOptions plan_options(const Mapping& mapping, const Target& target, const SyncState& s) {
    PlanOptions po;
    po.managers_first = target.wants_managers_first();
    po.username_key = target.username_key();
    po.fill_required = [&target](OrgUser& u) { target.fill_required(u); };
    po.allow_removals = s.read_complete;
    po.delete_removed_users = mapping.removed_user_action() == RemovedUserAction::del;
    if (mapping.delete_after().count() > 0)
        po.delete_disabled_before = static_cast<std::int64_t>(std::time(nullptr)) - mapping.delete_after().count();
    po.conflict_policy = mapping.conflict_policy();
    po.frozen_users = s.desired.frozen_users;
    po.frozen_departments = s.desired.frozen_departments;
    return po;
}

// Skips, conflicts and (after an incomplete read) what was left untouched, as items of the run.
void record_plan_notes(const SyncState& s, RunReporter& reporter) {
    const auto run_id = reporter.run_id();
    for (const auto& k : s.plan.skipped) {
        reporter.record(RunItem{"plan", k.object_type, k.external_id, "skip", k.reason});
        spdlog::warn("run {}: skipped {} {}: {}", run_id, k.object_type, k.external_id, k.reason);
    }
    for (const auto& k : s.plan.conflicts) {
        reporter.record(RunItem{"plan", k.object_type, k.external_id, "conflict", k.reason});
        spdlog::warn("run {}: conflict for {} {}: {}", run_id, k.object_type, k.external_id, k.reason);
    }
    // A partial run names what it left alone: every department whose DingTalk state is unknown.
    std::set<std::string> untouched(s.desired.frozen_departments.begin(), s.desired.frozen_departments.end());
    if (!s.read_complete)  // below a failed read: never seen this time, kept as the target has them
        for (const auto& [id, d] : s.current.departments)
            if (!s.desired.snapshot.departments.count(id)) untouched.insert(id);
    for (const auto& id : untouched)
        reporter.record(
            RunItem{"plan", "department", id, "untouched",
                    "not read completely from DingTalk; it and its members were left as they are in the target"});
}

// Removals the configuration causes say so, not "no longer in DingTalk": a department DingTalk
// lists outside include/exclude_departments (or below one, as the target holds it), a user the
// target has only in such departments.
void explain_scope_removals(SyncState& s) {
    if (s.outside_scope.empty()) return;
    constexpr std::string_view kGone = "no longer in DingTalk";
    auto outside = [&s](std::string id) {
        for (int depth = 0; depth < 64 && !id.empty(); ++depth) {
            if (s.outside_scope.count(id)) return true;
            const auto d = s.current.departments.find(id);
            if (d == s.current.departments.end()) return false;
            id = d->second.parent_external_id;
        }
        return false;
    };
    for (Change& c : s.plan.changes) {
        if (c.detail.view() != kGone) continue;
        if (c.kind == ChangeKind::delete_department && outside(std::string(c.external_id.view()))) {
            c.detail = "outside sync.include_departments / exclude_departments (DingTalk still has it)";
        } else if (c.kind == ChangeKind::disable_user || c.kind == ChangeKind::delete_user) {
            const auto u = s.current.users.find(std::string(c.external_id.view()));
            if (u != s.current.users.end() && !u->second.departments.empty() &&
                std::all_of(u->second.departments.begin(), u->second.departments.end(),
                            [&](const Membership& m) { return outside(m.department.str()); }))
                c.detail = "only in departments outside sync.include_departments / exclude_departments";
        }
    }
}

std::optional<std::int64_t> dept_id(std::string_view text) {
    std::int64_t id = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size() || id <= 0) return std::nullopt;  // not a DingTalk id
    return id;
}

// ---- plan: diff the desired org against the target ----
void make_run_plan(const Mapping& mapping, Target& target, SyncState& s, RunReporter& reporter) {
    s.plan = make_plan(s.desired.snapshot, s.current, plan_options(mapping, target, s));
    explain_scope_removals(s);
    target.planned(s.plan);
    for (const auto& k : s.desired.skipped) s.plan.skipped.push_back(k);
    count_plan(s.plan, reporter.counters());
    reporter.counters().items_skipped = static_cast<std::int64_t>(s.plan.skipped.size());
}

Status plan_stage(const Mapping& mapping, Target& target, SyncState& s, RunReporter& reporter) {
    target.normalize(s.desired.snapshot);
    auto current = target.read_against(s.desired.snapshot);  // users as desired are kept as ids only
    if (!current) return fail("cannot read the target: " + current.error());
    s.current = std::move(*current);
    target.resolve_name_clashes(s.desired.snapshot, s.current);
    make_run_plan(mapping, target, s, reporter);
    return {};
}

// ---- confirm: removals that rest on /department/list alone ----
// The recursive list is one call for the whole tree, and only the root's children are checked
// against listsub: a deeper department it leaves out (clipped or hidden by DingTalk) would be
// deleted, and its members disabled, although DingTalk still has them. So what the plan removes
// on that basis is asked about once each (department/get, v2/user/get; a sync that removes
// nothing spends nothing), plus department/get for the parents needed to tell whether a
// department DingTalk still has lies inside the synced scope. "Not found" confirms a removal;
// a department inside the scope that the list did not give means it left one out.
struct Unconfirmed {
    std::string type, id, api, reason;
};
struct ListCheck {
    std::vector<std::string> left_out;  // departments inside the scope that the list did not give
    std::vector<Unconfirmed> unconfirmed;
    std::optional<dingtalk::ApiFailure> fatal;  // no further call could succeed (quota, permission, ...)
};

class RemovalCheck {
public:
    RemovalCheck(dingtalk::ContactsApi& api, const SyncState& s, const Mapping& mapping, std::int64_t root)
        : api_(api), s_(s), mapping_(mapping), root_(root) {}

    ListCheck run() {
        std::vector<std::int64_t> departments;
        std::vector<std::string> users;
        for (const Change& c : s_.plan.changes) {
            if (c.kind == ChangeKind::delete_department) {
                if (auto id = dept_id(c.external_id.view())) departments.push_back(*id);
            } else if (c.kind == ChangeKind::disable_user || c.kind == ChangeKind::delete_user) {
                // A user removed by an earlier sync (now deleted after delete_after, or releasing a
                // value) was decided then; only users active in the target are asked about.
                if (!s_.current.removed_users.count(std::string(c.external_id.view())))
                    users.emplace_back(c.external_id.view());
            }
        }
        for (auto id : departments) ask(id);
        for (const auto& u : users) {
            api_.user_get(
                u, [this, u](dingtalk::UserDetail&& d) { user_depts_[u] = std::move(d.item.dept_id_list); },
                [this, u](const dingtalk::ApiFailure& f) {
                    if (f.kind == dingtalk::FailureKind::not_found)
                        gone_users_.insert(u);  // the removal stands
                    else
                        failed_users_[u] = f;
                });
        }
        ListCheck out;
        out.fatal = api_.run([] {});
        // Up the tree from what DingTalk answered, one level per round, until every chain ends in
        // a department of this read, the root, an excluded department, or one that is gone.
        for (int round = 0; round < 32; ++round) {
            bool asked = false;
            for (const auto& [id, parent] : std::map<std::int64_t, std::int64_t>(parents_))
                asked |= ask_if_unknown(parent);
            for (const auto& [u, depts] : user_depts_)
                for (auto d : depts) asked |= ask_if_unknown(d);
            if (!asked || out.fatal) break;
            out.fatal = api_.run([] {});
        }
        if (out.fatal) return out;
        std::set<std::int64_t> left_out;
        for (auto id : departments) {
            const Scope where = scope_of(id);
            if (where == Scope::inside) left_out.insert(id);
            if (where == Scope::unknown) out.unconfirmed.push_back(unconfirmed("department", std::to_string(id)));
        }
        for (const auto& u : users) {
            if (auto f = failed_users_.find(u); f != failed_users_.end()) {
                out.unconfirmed.push_back({"user", u, f->second.api,
                                           "v2/user/get could not confirm that it is gone: " + f->second.message()});
                continue;
            }
            if (gone_users_.count(u)) continue;
            auto found = user_depts_.find(u);
            if (found == user_depts_.end()) {  // no answer at all
                out.unconfirmed.push_back({"user", u, "/topapi/v2/user/get", "v2/user/get gave no answer"});
                continue;
            }
            // DingTalk has the user in a department of this read whose pages did not list it (a
            // page that left it out, or a move while the pages were read): not gone, so kept as
            // the target has it, and the next read decides. One the list did not give is left out.
            bool unknown = false, in_left_out = false;
            std::optional<std::int64_t> unlisted;
            for (auto d : found->second) {
                if (s_.desired.snapshot.departments.count(std::to_string(d))) {
                    unlisted = d;
                    continue;
                }
                const Scope where = scope_of(d);
                if (where == Scope::inside) {
                    left_out.insert(d);
                    in_left_out = true;
                }
                if (where == Scope::unknown) unknown = true;
            }
            if (unlisted && !in_left_out)
                out.unconfirmed.push_back({"user", u, "/topapi/v2/user/get",
                                           "v2/user/get places it in department " + std::to_string(*unlisted) +
                                               ", whose member pages did not list it; kept as it is"});
            else if (unknown && !in_left_out)
                out.unconfirmed.push_back(unconfirmed("user", u));
        }
        for (auto id : left_out) out.left_out.push_back(std::to_string(id));
        return out;
    }

private:
    enum class Scope { inside, outside, unknown };

    void ask(std::int64_t id) {
        if (!asked_.insert(id).second) return;
        api_.department_get(
            id, [this, id](dingtalk::DeptDetail&& d) { parents_[id] = d.parent_id; },
            [this, id](const dingtalk::ApiFailure& f) {
                // 60003: deleted; 50004: outside the app's contact scope (dingtalk-api.md §2), so
                // outside what any read of this app can sync.
                if (f.kind == dingtalk::FailureKind::not_found || f.errcode == 50004)
                    gone_depts_.insert(id);
                else
                    failed_depts_[id] = f;
            });
    }

    // Asks about `id` when its place decides a chain and is not known yet.
    bool ask_if_unknown(std::int64_t id) {
        if (id <= 0 || asked_.count(id) || settled(id)) return false;
        ask(id);
        return true;
    }

    bool settled(std::int64_t id) const {
        return id == root_ || (root_ != 1 && id == 1) || mapping_.exclude_departments().count(id) ||
               s_.desired.snapshot.departments.count(std::to_string(id));
    }

    // Where DingTalk has department `id` now: inside the synced scope (below a department this
    // read synced; the root is one unless include_departments leaves it out), outside it (below
    // an excluded department, at or above an unsynced root, or gone), or unknown (a question
    // failed).
    Scope scope_of(std::int64_t id) const {
        for (int depth = 0; depth < 64; ++depth) {
            if (mapping_.exclude_departments().count(id)) return Scope::outside;
            if (s_.desired.snapshot.departments.count(std::to_string(id))) return Scope::inside;
            if (id == root_) return Scope::outside;  // the root not synced itself: above the included subtrees
            if (root_ != 1 && id == 1) return Scope::outside;  // the top of the org, above the root
            if (gone_depts_.count(id)) return Scope::outside;
            const auto p = parents_.find(id);
            if (p == parents_.end()) return Scope::unknown;  // its question failed, or was never answered
            id = p->second;
        }
        return Scope::unknown;
    }

    Unconfirmed unconfirmed(const std::string& type, const std::string& id) const {
        auto f = type == "department" ? failed_depts_.find(dept_id(id).value_or(0)) : failed_depts_.end();
        if (f == failed_depts_.end()) f = failed_depts_.begin();  // a department further up failed
        if (f == failed_depts_.end())
            return {type, id, "/topapi/v2/department/get", "its place in DingTalk is unknown"};
        return {type, id, f->second.api,
                "department/get could not confirm that it is gone from the synced departments: " + f->second.message()};
    }

    dingtalk::ContactsApi& api_;
    const SyncState& s_;
    const Mapping& mapping_;
    std::int64_t root_;
    std::set<std::int64_t> asked_;
    std::map<std::int64_t, std::int64_t> parents_;  // department -> its parent, as department/get says
    std::map<std::int64_t, dingtalk::ApiFailure> failed_depts_;
    std::set<std::int64_t> gone_depts_;
    std::set<std::string> gone_users_;
    std::map<std::string, std::vector<std::int64_t>> user_depts_;  // v2/user/get's dept_id_list
    std::map<std::string, dingtalk::ApiFailure> failed_users_;
};

std::string joined(const std::vector<std::string>& ids) {
    std::string out;
    for (std::size_t i = 0; i < ids.size() && i < 10; ++i) out += (i ? ", " : "") + ids[i];
    if (ids.size() > 10) out += " and " + std::to_string(ids.size() - 10) + " more";
    return out;
}

// What the sync says once the plan is final.
void note_plan(SyncState& s, RunReporter& reporter) {
    record_plan_notes(s, reporter);
    if (!s.read_complete)
        s.incomplete =
            "the read was incomplete (" + std::to_string(s.failed_departments) +
            " departments could not be fully read); no removals were computed" +
            (s.plan.suppressed_removals ? " (" + std::to_string(s.plan.suppressed_removals) + " held back)" : "");
    else if (s.unconfirmed > 0)
        s.incomplete = "DingTalk could not confirm " + std::to_string(s.unconfirmed) +
                       " of the removals; those were kept as the target has them";
}

void print_counts(std::ostream& out, const PlanCounts& c) {
    out << "  departments: +" << c.create_department << " ~" << c.update_department << " -" << c.delete_department
        << "\n  users:       +" << c.create_user << " ~" << c.update_user << " disable " << c.disable_user << " delete "
        << c.delete_user << "\n";
}

void print_plan(std::ostream& out, const SyncState& s, bool dry_run, std::int64_t run_id) {
    out << (dry_run ? "Plan (dry run, nothing applied): " : "Plan: ") << s.plan.counts.total() << " changes\n";
    print_counts(out, s.plan.counts);
    if (!s.incomplete.empty()) out << "  note: " << s.incomplete << "\n";
    if (!s.plan.skipped.empty())
        out << "  skipped: " << s.plan.skipped.size() << " (see history show " << run_id << ")\n";
    if (!s.plan.conflicts.empty())
        out << "  conflicts: " << s.plan.conflicts.size() << " unique values left empty (see history show " << run_id
            << ")\n";
}

void print_changes(std::ostream& out, const SyncPlan& plan) {
    for (const auto& c : plan.changes) {
        out << "  " << change_kind_name(c.kind) << " " << c.external_id;
        if (c.kind == ChangeKind::create_department || c.kind == ChangeKind::update_department)
            out << " \"" << c.department->name << "\"";
        else if (c.kind == ChangeKind::create_user || c.kind == ChangeKind::update_user)
            out << " \"" << c.user->display_name << "\"";
        if (!c.detail.empty()) out << ": " << c.detail;
        out << "\n";
    }
}

std::string apply_summary(const SyncState& s, const RunCounters& counters, bool forced) {
    std::string summary =
        std::to_string(counters.changes_applied) + " of " + std::to_string(s.plan.counts.total()) + " changes applied";
    if (counters.items_failed > 0) summary += "; " + std::to_string(counters.items_failed) + " items failed";
    if (!s.plan.skipped.empty()) summary += "; " + std::to_string(s.plan.skipped.size()) + " skipped";
    if (!s.plan.conflicts.empty()) summary += "; " + std::to_string(s.plan.conflicts.size()) + " conflicts";
    if (!s.incomplete.empty()) summary += "; " + s.incomplete;
    if (forced) summary += "; safeguard overridden with --force";
    return summary;
}

// Everything after the run was recorded as started; returns how the run ended.
RunReporter::Outcome sync_stages(const AgentConfig& config, const Mapping& mapping, Target& target,
                                 const SyncOptions& options, std::ostream& out, RunReporter& reporter,
                                 dingtalk::DingTalkClient& client, SyncResult& result) {
    auto finish = [&](RunStatus status, const std::string& message) { return reporter.finish(status, message); };
    dingtalk::ContactsApi api(client);
    FetchSettings settings{config.root_department, !config.client.transport.proxy_url.empty()};
    SyncState s;
    // Fetch, build and plan; a second time, reading the tree with listsub, when the one-call
    // /department/list turns out to have left out a department that DingTalk still has.
    for (int read = 0;; ++read) {
        const std::uint64_t before = client.stats().requests;
        auto fetched = fetch_org(api, mapping, settings, reporter);
        if (!fetched) return finish(RunStatus::failed, fetched.error());
        spdlog::info("run {}: fetched {} departments, {} users in {} requests", reporter.run_id(),
                     fetched->departments.size(), fetched->users.size(), client.stats().requests);
        s = SyncState{};
        if (auto r = build_stage(std::move(*fetched), mapping, config.root_department, s); !r)
            return finish(RunStatus::failed, r.error());
        if (auto r = plan_stage(mapping, target, s, reporter); !r) return finish(RunStatus::failed, r.error());
        // What an exclusion removes is asked about too: the list was read at the start of a read
        // that may take minutes, and a user or department that moved into the synced tree
        // meanwhile is still outside by its word.
        if (read > 0 || !s.tree_from_list || !s.read_complete || s.plan.counts.removals() == 0) break;
        // Asking about each removal costs a call each; past what reading the org again costs,
        // the second read (listsub per department, which needs no confirming) is the cheaper one.
        ListCheck check;
        // A second read costs what the first did plus a listsub per department.
        const auto read_cost = client.stats().requests - before + s.desired.snapshot.departments.size();
        if (static_cast<std::uint64_t>(s.plan.counts.removals()) >= read_cost) {
            spdlog::warn(
                "run {}: {} removals rest on /department/list alone, more than the about {} requests of reading the "
                "tree again with listsub per department; reading it again instead of asking about each",
                reporter.run_id(), s.plan.counts.removals(), read_cost);
        } else {
            check = RemovalCheck(api, s, mapping, config.root_department).run();
            update_call_counters(reporter.counters(), client.stats());
            if (check.fatal)
                return finish(RunStatus::failed, "the removals could not be confirmed with DingTalk (" +
                                                     dingtalk::explain_failure(*check.fatal, settings.via_proxy) +
                                                     "); nothing was applied");
        }
        if (static_cast<std::uint64_t>(s.plan.counts.removals()) >= read_cost) {
            settings.use_department_list = false;
            RunCounters& c = reporter.counters();
            c.departments_fetched = c.users_fetched = 0;
            count_plan(SyncPlan{}, c);
            continue;
        }
        if (!check.left_out.empty()) {
            spdlog::warn(
                "run {}: /department/list left out department{} {} that DingTalk still has; reading the tree "
                "again with listsub per department instead of removing {}",
                reporter.run_id(), check.left_out.size() > 1 ? "s" : "", joined(check.left_out),
                check.left_out.size() > 1 ? "them and their members" : "it and its members");
            for (const auto& id : check.left_out)
                reporter.record(RunItem{"plan", "department", id, "/department/list",
                                        "left out of the recursive list, but DingTalk still has it: the tree was "
                                        "read again with listsub"});
            settings.use_department_list = false;
            RunCounters& c = reporter.counters();
            c.departments_fetched = c.users_fetched = 0;  // counted again by the second read
            count_plan(SyncPlan{}, c);                    // nor is the first plan the run's
            continue;
        }
        if (!check.unconfirmed.empty()) {
            // Not known to be gone: kept as the target has it (with the departments above it, so
            // no kept department loses its parent); the removals that were confirmed go ahead.
            for (const auto& u : check.unconfirmed) {
                spdlog::warn("run {}: {} {} was kept: {}", reporter.run_id(), u.type, u.id, u.reason);
                reporter.item_failed(RunItem{"fetch", u.type, u.id, u.api, u.reason});
                if (u.type == "user") {
                    s.desired.frozen_users.insert(u.id);
                    continue;
                }
                for (std::string id = u.id; !id.empty() && !s.desired.snapshot.departments.count(id);) {
                    s.desired.frozen_departments.insert(id);
                    const auto cur = s.current.departments.find(id);
                    id = cur == s.current.departments.end() ? std::string() : cur->second.parent_external_id;
                }
            }
            s.unconfirmed = check.unconfirmed.size();
            make_run_plan(mapping, target, s, reporter);
        }
        break;
    }
    if (s.read_complete) {
        result.outside_departments.emplace();
        for (const auto& id : s.outside_scope)
            if (auto n = dept_id(id)) result.outside_departments->insert(*n);
    }
    note_plan(s, reporter);
    print_call_cost(out, client.stats());
    print_plan(out, s, options.dry_run, reporter.run_id());

    auto existing = static_cast<int>(s.current.user_count() + s.current.departments.size());
    auto over = config.max_deletes.exceeded(s.plan.counts.removals(), existing);
    if (options.dry_run) {
        print_changes(out, s.plan);
        if (over) out << "  note: a real run would abort: " << *over << "\n";
        return finish(s.incomplete.empty() ? RunStatus::succeeded : RunStatus::partial,
                      "dry run: " + std::to_string(s.plan.counts.total()) + " changes planned, none applied" +
                          (s.incomplete.empty() ? "" : "; " + s.incomplete));
    }
    if (over && !options.force) return finish(RunStatus::aborted, *over);

    if (auto r = apply_plan(s.plan, target, reporter); !r) return finish(RunStatus::failed, r.error());
    const RunCounters& counters = reporter.counters();
    bool partial = counters.items_failed > 0 || !s.incomplete.empty();
    return finish(partial ? RunStatus::partial : RunStatus::succeeded, apply_summary(s, counters, over.has_value()));
}

}  // namespace

SyncResult run_full_sync(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                         const SyncOptions& options, std::ostream& out) {
    SyncResult result;
    RunReporter reporter(history, config.secrets(), config.progress_interval);
    if (auto r = reporter.start("full", options.trigger, options.dry_run); !r) {
        // No record, no run: a sync must never change the target without its history.
        result.message =
            "cannot record the run in the state database (" + r.error() + "); nothing was fetched or applied";
        spdlog::error("{}", result.message);
        return result;
    }
    result.run_id = reporter.run_id();
    spdlog::info("run {}: full sync{} started", result.run_id, options.dry_run ? " (dry run)" : "");
    dingtalk::DingTalkClient client(config.client);
    auto outcome = sync_stages(config, mapping, target, options, out, reporter, client, result);
    result.status = outcome.status;
    result.message = outcome.message;
    result.quota_exhausted = client.stats().quota_exhausted;
    return result;
}

}  // namespace dingbridge::agent
