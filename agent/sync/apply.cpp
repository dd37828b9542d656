#include "agent/sync/apply.h"

#include <algorithm>
#include <string>

namespace dingbridge::agent {

void count_plan(const SyncPlan& plan, RunCounters& c) {
    c.changes_planned = plan.counts.total();
#define DINGBRIDGE_COPY_COUNT(name) c.name = plan.counts.name;
    DINGBRIDGE_CHANGE_COUNTERS(DINGBRIDGE_COPY_COUNT)
#undef DINGBRIDGE_COPY_COUNT
}

namespace {

bool is_department(ChangeKind kind) {
    return kind == ChangeKind::create_department || kind == ChangeKind::update_department ||
           kind == ChangeKind::delete_department;
}

void record_failure(RunReporter& reporter, const Change& c, const std::string& error) {
    reporter.item_failed(RunItem{"apply", is_department(c.kind) ? "department" : "user", c.external_id,
                                 change_kind_name(c.kind), error});
}

// Applies every change of the plan inside the open transaction; when `outcomes` is given,
// (*outcomes)[i] for change i. A full sync asks for none: a first sync of 100,000 users would hold
// 100,000 Status objects (40 bytes each) only to learn which failed; one bit each does.
void apply_changes(const SyncPlan& plan, Target& target, RunReporter& reporter, std::vector<Status>* outcomes,
                   std::set<std::string>* settled) {
    const std::size_t batch_size = std::max<std::size_t>(1, target.apply_batch_size());
    RunCounters& counters = reporter.counters();
    std::vector<Status> batch;
    std::vector<bool> failed(plan.changes.size());
    if (outcomes) {
        outcomes->clear();
        outcomes->reserve(plan.changes.size());
    }
    for (std::size_t i = 0; i < plan.changes.size(); ++i) {
        const std::size_t in_batch = i % batch_size;
        if (in_batch == 0)
            target.apply_batch(plan.changes.data() + i, std::min(batch_size, plan.changes.size() - i), batch);
        const Status& outcome = batch[in_batch];
        if (!outcome) {
            failed[i] = true;
            record_failure(reporter, plan.changes[i], outcome.error());
        } else {
            ++counters.changes_applied;
        }
        if (outcomes) outcomes->push_back(outcome);
        if (in_batch + 1 == batch_size || i + 1 == plan.changes.size())
            for (auto& [user, what] : target.take_settled_conflicts()) {
                reporter.record(RunItem{"apply", "user", user, "conflict", what});
                if (settled) settled->insert(std::move(user));
            }
        if (in_batch + 1 == batch_size)  // the reporter throttles: a tty line / history write a second
            reporter.progress("applying: " + std::to_string(counters.changes_applied) + "/" +
                                  std::to_string(counters.changes_planned),
                              "");
    }
    // What the target deferred over the whole run (SCIM memberships) and failed: those changes
    // fail after all (a change that had already failed is recorded once).
    for (auto& [change, error] : target.finish_batches()) {
        const auto i = static_cast<std::size_t>(change - plan.changes.data());
        if (i >= failed.size() || failed[i]) continue;
        failed[i] = true;
        if (outcomes) (*outcomes)[i] = fail(error);
        --counters.changes_applied;
        record_failure(reporter, *change, error);
    }
    reporter.clear_line();
}

}  // namespace

Status apply_plan(const SyncPlan& plan, Target& target, RunReporter& reporter, std::vector<Status>* outcomes,
                  std::set<std::string>* settled) {
    RunCounters& counters = reporter.counters();
    // Nothing is applied unless the history can hold its record (checked once more right here).
    if (auto r = reporter.checkpoint(); !r)
        return fail("cannot write the run's history to the state database (" + r.error() + "); nothing was applied");
    if (auto r = target.begin(); !r) return fail("cannot start the target transaction: " + r.error());
    apply_changes(plan, target, reporter, outcomes, settled);
    // The record of what is about to be committed must be stored first.
    if (auto r = reporter.checkpoint(); !r) {
        target.rollback();
        counters.changes_applied = 0;
        return fail("cannot write the run's history to the state database (" + r.error() +
                    "); the target transaction was rolled back, nothing was applied");
    }
    if (auto r = target.commit(); !r) {
        target.rollback();
        counters.changes_applied = 0;
        return fail("cannot commit the target transaction (nothing applied): " + r.error());
    }
    return {};
}

}  // namespace dingbridge::agent
