#pragma once
// Full sync: walk DingTalk's department tree from the root (listsub + department/get), page the
// users of every department (v2/user/list, contain_access_limit, size 100), merge, map, validate
// the tree, diff against the target, check the deletion safeguard, then apply the ordered plan
// in one target transaction, recording the run, its progress and every failed item in the
// history. Runs on the calling thread (the client's loop); writes the human summary to `out`.

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/mapping/mapping.h"
#include "agent/sync/history.h"
#include "agent/targets/target.h"

namespace dingbridge::agent {

struct SyncOptions {
    bool dry_run = false;
    bool force = false;
    std::string trigger = "cli";
};

struct SyncResult {
    std::int64_t run_id = 0;
    std::string status;  // succeeded, partial, failed, aborted
    std::string message;
    int exit_code() const;
};

SyncResult run_full_sync(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                         const SyncOptions& options, std::ostream& out);

// The plan's counts into the run counters (changes_planned and one counter per change kind).
void count_plan(const SyncPlan& plan, RunCounters& counters);

// The apply stage of a sync, shared with event-driven updates: applies `plan` in one target
// transaction (batches of savepoints; a failed change is undone alone), records every failed
// item in the history of run `run_id` and updates counters.changes_applied/items_failed.
// Nothing is committed unless the history took its record (`history_ok` false: some earlier
// write of this run failed). Returns why nothing was applied, or nullopt.
std::optional<std::string> apply_plan(const SyncPlan& plan, Target& target, HistoryStore& history, std::int64_t run_id,
                                      RunCounters& counters, const std::vector<std::string>& secrets, bool history_ok);

// Operator guidance for a fatal DingTalk/proxy failure ("what to do").
std::string explain_failure(const dingtalk::ApiFailure& f, const AgentConfig& config);

}  // namespace dingbridge::agent
