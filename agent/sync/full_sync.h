#pragma once
// Full sync: walk DingTalk's department tree from the root (listsub + department/get), page the
// users of every department (v2/user/list, contain_access_limit, size 100), merge, map, validate
// the tree, diff against the target, check the deletion safeguard, then apply the ordered plan
// in one target transaction, recording the run, its progress and every failed item in the
// history. Runs on the calling thread (the client's loop); writes the human summary to `out`.

#include <cstdint>
#include <optional>
#include <ostream>
#include <set>
#include <string>

#include "agent/config.h"
#include "agent/mapping/mapping.h"
#include "agent/sync/history.h"
#include "agent/sync/run_reporter.h"
#include "agent/targets/target.h"

namespace dingbridge::agent {

struct SyncOptions {
    bool dry_run = false;
    bool force = false;
    std::string trigger = "cli";
};

struct SyncResult {
    std::int64_t run_id = 0;
    RunStatus status = RunStatus::failed;
    std::string message;
    bool quota_exhausted = false;  // DingTalk answered 90020: no call can succeed until next month
    // After a complete read: the departments DingTalk listed outside include/exclude_departments
    // (run mode's event path then costs no call to learn that a user's other department is not
    // synced). Empty otherwise, or when nothing is scoped out.
    std::optional<std::set<std::int64_t>> outside_departments;
    int exit_code() const { return run_status_exit_code(status); }
};

// The stages, each in its own unit: fetch (sync/fetch.h) -> build (sync/build.h: map and
// structure) -> plan (org/plan.h: diff against the target, safeguard) -> apply (sync/apply.h),
// told to the terminal, the log and the history through a RunReporter.
SyncResult run_full_sync(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                         const SyncOptions& options, std::ostream& out);

}  // namespace dingbridge::agent
