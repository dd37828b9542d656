#pragma once
// The fetch stage of a full sync: reads the department tree and the users of every department
// in scope from DingTalk through ContactsApi, with the fewest metered calls the mapping allows
// (one recursive /department/list checked against the root's listsub, listsub per department
// as the fallback; department/get only when the mapping reads a get-only field; v2/user/get per
// user only for manager_source: dingtalk). Departments or users whose read failed are recorded
// as failed items of the run and marked in the FetchedOrg; a failure no retry can fix (IP not
// allow-listed, bad credentials, proxy refusal, ...) ends the stage with its explanation.

#include <cstdint>
#include <string>

#include "agent/dingtalk/contacts_api.h"
#include "agent/mapping/mapping.h"
#include "agent/sync/build.h"
#include "agent/sync/run_reporter.h"
#include "shared/result.h"

namespace dingbridge::agent {

struct FetchSettings {
    std::int64_t root_department = 1;
    bool via_proxy = false;  // for the explanation of a fatal failure
    // false: read the tree with listsub per department even if /department/list agrees with the
    // root's listsub (a full sync that found the list leaving out a live department, full_sync.cpp).
    bool use_department_list = true;
};

// The run's requests/retries/throttled from the client's totals so far: fetch_org keeps them
// current while it reads; a stage that calls DingTalk after it (full_sync's removal check) too.
void update_call_counters(RunCounters& c, const dingtalk::ClientStats& stats);

Result<FetchedOrg> fetch_org(dingtalk::ContactsApi& api, const Mapping& mapping, const FetchSettings& settings,
                             RunReporter& reporter);

}  // namespace dingbridge::agent
