#pragma once
// The apply stage, shared by the full sync and the event processor: applies a plan in one target
// transaction (batches of savepoints; a failed change is undone alone), records every failed
// change as an item of the run and counts changes_applied/items_failed (including the changes
// whose part a target deferred to the end of the run and which failed there: finish_batches()).
// Nothing is committed unless the history holds the run's record (checked before the transaction
// and again before the commit); then the transaction is rolled back and changes_applied is 0.

#include <set>
#include <string>
#include <vector>

#include "agent/org/plan.h"
#include "agent/sync/run_reporter.h"
#include "agent/targets/target.h"
#include "shared/result.h"

namespace dingbridge::agent {

// The plan's counts into the run counters (changes_planned and one counter per change kind).
void count_plan(const SyncPlan& plan, RunCounters& counters);

// Ok when the transaction was committed (some changes may have failed: see `outcomes`, one per
// plan change, when given); else why nothing was applied.
// `settled`, when given, receives the users whose conflicts the target settled itself
// (Target::take_settled_conflicts): written otherwise than planned.
Status apply_plan(const SyncPlan& plan, Target& target, RunReporter& reporter, std::vector<Status>* outcomes = nullptr,
                  std::set<std::string>* settled = nullptr);

}  // namespace dingbridge::agent
