#pragma once
// Operator guidance for a DingTalk/proxy failure that stopped a run: the failure's message plus
// what to fix (allow-list the egress IP, check the AppKey, grant a permission, ...). Used by the
// sync, the event processor and check-config alike. `via_proxy`: the agent calls DingTalk
// through dingbridge-proxy (proxy.url set). Pure.

#include <string>

#include "agent/dingtalk/errors.h"

namespace dingbridge::agent::dingtalk {

std::string explain_failure(const ApiFailure& f, bool via_proxy);

}  // namespace dingbridge::agent::dingtalk
