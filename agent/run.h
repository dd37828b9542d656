#pragma once
// `dingbridge-agent run`: the long-running incremental sync (docs/agent.md "Run mode").
// Receives events (stream mode through the proxy, or the signed HTTP push), journals them in the
// state database before acknowledging, applies them in coalesced batches (EventProcessor), and
// runs a full sync when the agent never synced, was away longer than events.catch_up_after, or
// when the scheduled reconcile (events.reconcile_interval) is due and the monthly call budget
// allows it. Returns the process exit code; stops cleanly on SIGTERM/SIGINT.

#include <ostream>

#include "agent/config.h"
#include "agent/mapping/mapping.h"
#include "agent/sync/history.h"
#include "agent/targets/target.h"

namespace dingbridge::agent {

int run_agent(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
              std::ostream& out);

}  // namespace dingbridge::agent
