#include "agent/sync/full_sync.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <ctime>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/contacts_api.h"
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
    std::size_t failed_departments = 0;
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
    s.read_complete = fetched.complete() && fetched.failed_users.empty();
    s.failed_departments = fetched.failed_departments.size();
    s.tree_from_list = fetched.tree_from_list;
    // Frees each fetched user once mapped: the raw and mapped users are never both held in full.
    s.desired = build_desired(std::move(fetched), mapping);
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

// ---- plan: diff the desired org against the target ----
void make_run_plan(const Mapping& mapping, const Target& target, SyncState& s, RunReporter& reporter) {
    s.plan = make_plan(s.desired.snapshot, s.current, plan_options(mapping, target, s));
    for (const auto& k : s.desired.skipped) s.plan.skipped.push_back(k);
    count_plan(s.plan, reporter.counters());
    reporter.counters().items_skipped = static_cast<std::int64_t>(s.plan.skipped.size());
}

Status plan_stage(const Mapping& mapping, Target& target, SyncState& s, RunReporter& reporter) {
    target.normalize(s.desired.snapshot);
    auto current = target.read_against(s.desired.snapshot);  // users as desired are kept as ids only
    if (!current) return fail("cannot read the target: " + current.error());
    s.current = std::move(*current);
    make_run_plan(mapping, target, s, reporter);
    return {};
}

// ---- confirm: departments the plan deletes on the word of /department/list alone ----
// The recursive list is one call for the whole tree, and only the root's children are checked
// against listsub: a deeper department it leaves out (clipped or hidden by DingTalk) would be
// deleted and its members disabled. So each department the plan deletes is asked about once
// (department/get; a sync that deletes none spends nothing). "Not found" confirms the deletion.
struct ListCheck {
    std::vector<std::string> alive;        // DingTalk still has it inside the root: the list left it out
    std::vector<std::string> unconfirmed;  // the question failed: neither deleted nor known
};

ListCheck check_list_deletions(dingtalk::ContactsApi& api, const SyncState& s, std::int64_t root) {
    std::map<std::string, std::int64_t> answered;  // department -> its parent, as department/get says
    std::set<std::string> asked, gone;
    for (const Change& c : s.plan.changes) {
        if (c.kind != ChangeKind::delete_department) continue;
        const std::string id(c.external_id.view());
        std::int64_t dept = 0;
        const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), dept);
        if (ec != std::errc() || end != id.data() + id.size() || dept <= 0) continue;  // not a DingTalk id
        asked.insert(id);
        api.department_get(
            dept, [&answered, id](dingtalk::DeptDetail&& d) { answered[id] = d.parent_id; },
            [&gone, id](const dingtalk::ApiFailure& f) {
                if (f.kind == dingtalk::FailureKind::not_found) gone.insert(id);
            });
    }
    (void)api.run([] {});  // a call that failed, fatally or not, leaves its department unconfirmed
    // Inside the root when its parent was read this run, or is such a department itself (the list
    // may leave out a whole branch). The whole org (root 1) holds every department there is.
    std::function<bool(const std::string&, int)> inside = [&](const std::string& id, int depth) {
        if (root == 1) return true;
        const auto a = answered.find(id);
        if (a == answered.end() || depth > 64) return false;
        const std::string parent = std::to_string(a->second);
        return s.desired.snapshot.departments.count(parent) > 0 || inside(parent, depth + 1);
    };
    ListCheck check;
    for (const auto& id : asked) {
        if (gone.count(id)) continue;
        if (!answered.count(id)) {
            check.unconfirmed.push_back(id);
        } else if (inside(id, 0)) {
            check.alive.push_back(id);
        }  // else moved out of the root: gone from this sync's view, the deletion stands
    }
    return check;
}

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
                                 const SyncOptions& options, std::ostream& out, RunReporter& reporter) {
    auto finish = [&](RunStatus status, const std::string& message) { return reporter.finish(status, message); };
    dingtalk::DingTalkClient client(config.client);
    dingtalk::ContactsApi api(client);
    FetchSettings settings{config.root_department, !config.client.transport.proxy_url.empty()};
    SyncState s;
    // Fetch, build and plan; a second time, reading the tree with listsub, when the one-call
    // /department/list turns out to have left out a department that DingTalk still has.
    for (int read = 0;; ++read) {
        auto fetched = fetch_org(api, mapping, settings, reporter);
        if (!fetched) return finish(RunStatus::failed, fetched.error());
        spdlog::info("run {}: fetched {} departments, {} users in {} requests", reporter.run_id(),
                     fetched->departments.size(), fetched->users.size(), client.stats().requests);
        s = SyncState{};
        if (auto r = build_stage(std::move(*fetched), mapping, config.root_department, s); !r)
            return finish(RunStatus::failed, r.error());
        if (auto r = plan_stage(mapping, target, s, reporter); !r) return finish(RunStatus::failed, r.error());
        if (read > 0 || !s.tree_from_list || !s.read_complete || s.plan.counts.delete_department == 0) break;
        const ListCheck check = check_list_deletions(api, s, config.root_department);
        if (!check.alive.empty()) {
            spdlog::warn(
                "run {}: /department/list left out department{} {} that DingTalk still has; reading the tree "
                "again with listsub per department instead of deleting {}",
                reporter.run_id(), check.alive.size() > 1 ? "s" : "", joined(check.alive),
                check.alive.size() > 1 ? "them" : "it");
            for (const auto& id : check.alive)
                reporter.record(RunItem{"fetch", "department", id, "/department/list",
                                        "left out of the recursive list, but department/get still answers it: "
                                        "the tree was read again with listsub"});
            settings.use_department_list = false;
            RunCounters& c = reporter.counters();
            c.departments_fetched = c.users_fetched = 0;  // counted again by the second read
            continue;
        }
        if (!check.unconfirmed.empty()) {
            // Not known to be gone: kept, with everything else a removal would have touched.
            for (const auto& id : check.unconfirmed)
                reporter.item_failed(RunItem{"fetch", "department", id, "/topapi/v2/department/get",
                                             "left out of /department/list, and department/get could not confirm "
                                             "that it is gone"});
            s.read_complete = false;
            s.failed_departments += check.unconfirmed.size();
            make_run_plan(mapping, target, s, reporter);
        }
        break;
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
    auto outcome = sync_stages(config, mapping, target, options, out, reporter);
    result.status = outcome.status;
    result.message = outcome.message;
    return result;
}

}  // namespace dingbridge::agent
