#pragma once
// check-config --online: calls DingTalk through the configured path step by step (proxy,
// TLS, token, contact permissions) and tells apart each failure with what to do: proxy
// unreachable, proxy refused credentials (407) or destination (403), TLS/CA failure, wrong
// AppKey/AppSecret, egress IP not allow-listed (with the IP DingTalk saw), missing contact
// permission (checked with real contact calls: a token alone proves nothing). With an LDAP
// target, also the directory (connect, TLS, bind, base DN, schema; targets/ldap_check.h).

#include <cstdint>
#include <ostream>

#include "agent/config.h"
#include "agent/mapping/mapping.h"

namespace dingbridge::agent {

// Returns true when every check passed. With the mapping, also prints the estimated number of
// DingTalk calls of a full sync (two more calls: /department/list and /topapi/user/count).
// `calls`: set to the DingTalk calls the check made (metered like any other).
bool check_online(const AgentConfig& config, std::ostream& out, const Mapping* mapping = nullptr,
                  std::int64_t* calls = nullptr);

}  // namespace dingbridge::agent
