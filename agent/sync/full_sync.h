#pragma once
// Full sync: walk DingTalk's department tree from the root (listsub + department/get), page the
// users of every department (v2/user/list, contain_access_limit, size 100), merge, map, validate
// the tree, diff against the target, check the deletion safeguard, then apply the ordered plan
// in one target transaction, recording the run, its progress and every failed item in the
// history. Runs on the calling thread (the client's loop); writes the human summary to `out`.

#include <cstdint>
#include <ostream>
#include <string>

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

// Operator guidance for a fatal DingTalk/proxy failure ("what to do").
std::string explain_failure(const dingtalk::ApiFailure& f, const AgentConfig& config);

}  // namespace dingbridge::agent
