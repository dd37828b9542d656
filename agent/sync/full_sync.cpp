#include "agent/sync/full_sync.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <set>

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
Status plan_stage(const Mapping& mapping, Target& target, SyncState& s, RunReporter& reporter) {
    target.normalize(s.desired.snapshot);
    auto current = target.read_against(s.desired.snapshot);  // users as desired are kept as ids only
    if (!current) return fail("cannot read the target: " + current.error());
    s.current = std::move(*current);
    s.plan = make_plan(s.desired.snapshot, s.current, plan_options(mapping, target, s));
    for (const auto& k : s.desired.skipped) s.plan.skipped.push_back(k);
    count_plan(s.plan, reporter.counters());
    reporter.counters().items_skipped = static_cast<std::int64_t>(s.plan.skipped.size());
    record_plan_notes(s, reporter);
    if (!s.read_complete)
        s.incomplete =
            "the read was incomplete (" + std::to_string(s.failed_departments) +
            " departments could not be fully read); no removals were computed" +
            (s.plan.suppressed_removals ? " (" + std::to_string(s.plan.suppressed_removals) + " held back)" : "");
    return {};
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
    auto fetched =
        fetch_org(api, mapping, {config.root_department, !config.client.transport.proxy_url.empty()}, reporter);
    if (!fetched) return finish(RunStatus::failed, fetched.error());
    spdlog::info("run {}: fetched {} departments, {} users in {} requests", reporter.run_id(),
                 fetched->departments.size(), fetched->users.size(), client.stats().requests);
    print_call_cost(out, client.stats());

    SyncState s;
    if (auto r = build_stage(std::move(*fetched), mapping, config.root_department, s); !r)
        return finish(RunStatus::failed, r.error());
    if (auto r = plan_stage(mapping, target, s, reporter); !r) return finish(RunStatus::failed, r.error());
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
