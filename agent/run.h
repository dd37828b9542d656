#pragma once
// `dingbridge-agent run`: the long-running incremental sync (docs/agent.md "Run mode").
// Receives events (stream mode through the proxy, or the signed HTTP push), journals them in the
// state database before acknowledging, applies them in coalesced batches (EventProcessor), and
// runs a full sync when the agent never synced, was away longer than events.catch_up_after, or
// when the scheduled reconcile (events.reconcile_interval) is due and the monthly call budget
// allows it. Returns the process exit code; stops cleanly on SIGTERM/SIGINT.

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "agent/config.h"
#include "agent/events/journal.h"
#include "agent/mapping/mapping.h"
#include "agent/sync/history.h"
#include "agent/targets/target.h"

namespace dingbridge::agent {

int run_agent(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
              std::ostream& out);

// Deletes from state.db what is older than `history_keep`: finished runs with their items (the
// last applying full run stays) and settled journal rows. On every sync and run start, and once
// a day while `run` goes on; 0 keeps everything.
void prune_state(const AgentConfig& config, HistoryStore& history, events::Journal& journal);

// Why a full sync must wait for next month, or nothing: with dingtalk.monthly_call_budget set, a
// full read costs about what the last complete one did ("last_full_calls", kept by `sync` and
// `run`), and it waits when that is more than the month has left (or nothing is left).
std::optional<std::string> full_sync_over_budget(const AgentConfig& config, events::Journal& journal);

// Notes the calls of a complete full sync as the estimate of the next one.
void remember_full_sync_cost(events::Journal& journal, std::int64_t calls);

}  // namespace dingbridge::agent
