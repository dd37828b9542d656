#pragma once
// EventProcessor: turns journaled events into target changes (ARCHITECTURE.md "Incremental
// sync"): the pending rows of one batch are coalesced per object (any number of events for one
// user or department → one fetch), each object is read by id (v2/user/get, v2/department/get;
// 60121/60003 = removed), departments whose leaders changed are read again, then the same map →
// plan → safeguard → apply stages as a full sync run on the target's current state with only
// those objects replaced. The batch is one history run of kind `event`; its rows are marked done
// after the target committed (apply is idempotent: a crash between the two re-applies nothing).
// Holds one DingTalkClient so the access token is reused and refreshed across batches.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "agent/config.h"
#include "agent/dingtalk/client.h"
#include "agent/events/journal.h"
#include "agent/mapping/mapping.h"
#include "agent/org/schema.h"
#include "agent/sync/history.h"
#include "agent/targets/target.h"

namespace dingbridge::agent::events {

class EventBatch;

struct ProcessorStats {
    std::atomic<std::uint64_t> batches{0}, events_applied{0}, events_failed{0}, changes_applied{0};
    std::atomic<std::int64_t> last_lag_ms{0};  // journal → target commit of the newest batch
    std::atomic<bool> quota_exhausted{false};
};

struct BatchOutcome {
    std::size_t handled = 0;   // rows marked done or failed
    bool retry_later = false;  // some rows stay pending (fetch failed, quota, target error)
};

class EventProcessor {
public:
    EventProcessor(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                   Journal& journal, ProcessorStats& stats);
    [[nodiscard]] BatchOutcome process(const std::vector<JournalEvent>& rows);
    // How many users and departments processing `rows` would read by id: what process() leaves
    // out (role and admin changes the mapping does not read, removals of objects never synced,
    // rows naming nothing) is not counted. Reads the target's state when not cached yet.
    [[nodiscard]] std::size_t reads_needed(const std::vector<JournalEvent>& rows);
    // The target changed behind our back (a full sync). `outside`: what that sync's complete read
    // found outside the synced tree, which replaces what batches learned (else forgotten).
    void invalidate(const std::optional<std::set<std::int64_t>>& outside = std::nullopt) {
        cache_.reset();
        std::set<std::int64_t> now = outside && outside->size() <= kMaxOutside ? *outside : std::set<std::int64_t>{};
        if (now != outside_) {
            outside_ = std::move(now);
            save_outside();
        }
    }
    static constexpr std::size_t kMaxOutside = 100000;  // a bound, not a working size
    // DingTalk answered 90020 (here or in a full sync): no batch fetches again this month, and
    // the dingbridge_agent_quota_exhausted gauge reads 1.
    void note_quota_exhausted();

private:
    friend class EventBatch;  // one batch's stages (processor.cpp)
    const AgentConfig& config_;
    const Mapping& mapping_;
    Target& target_;
    HistoryStore& history_;
    Journal& journal_;
    ProcessorStats& stats_;
    dingtalk::DingTalkClient client_;
    std::uint64_t calls_counted_ = 0;
    std::optional<OrgSnapshot> cache_;  // the target's state after our last fully applied batch
    // Departments fetched because a fetched object named them, and found outside the synced tree:
    // not fetched again for that reason until the next full sync (patch.h, unknown_departments).
    // Kept in state.db (with the scope they were found under: root, include and exclude lists),
    // so that a restart does not buy them again.
    std::set<std::int64_t> outside_;
    std::string scope_key() const;
    void load_outside();
    void save_outside();
};

}  // namespace dingbridge::agent::events
