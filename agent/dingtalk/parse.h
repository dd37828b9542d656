#pragma once
// simdjson (on-demand) parsers for the oapi responses the sync reads (dingtalk-api.md §1-§4).
// Each takes the raw body (its capacity is grown for simdjson's padding, contents unchanged) and
// returns the compact struct or an ApiFailure: a non-zero errcode is classified (busy, throttle,
// token, IP allow-list, permission, ...); unparseable JSON, a missing `result` or a wrong type
// is `malformed`. Unknown fields are ignored, missing optional fields keep their defaults.
// Pure functions; one thread-local parser per thread.

#include <string>
#include <string_view>
#include <vector>

#include "agent/dingtalk/errors.h"
#include "agent/dingtalk/model.h"

namespace dingbridge::agent::dingtalk {

struct TokenReply {
    std::string access_token;
    std::int64_t expires_in = 0;
};

FailureKind classify_errcode(std::int64_t errcode, std::string_view sub_code);

Outcome<TokenReply> parse_gettoken(std::string_view api, std::string& body);
Outcome<std::vector<DeptSummary>> parse_listsub(std::string_view api, std::string& body);
Outcome<DeptDetail> parse_dept_get(std::string_view api, std::string& body);
Outcome<UserPage> parse_user_list(std::string_view api, std::string& body);
// /topapi/v2/user/get; an unknown or departed user (60121) is FailureKind::not_found.
Outcome<UserDetail> parse_user_get(std::string_view api, std::string& body);

// The IP DingTalk saw, from "...request ip=1.2.3.4 appKey(...)" (60020 messages); empty if none.
std::string ip_from_allowlist_message(std::string_view errmsg);
// The scopes from "...requiredScopes=[a, b]..." (60011 messages); empty if none.
std::string scopes_from_permission_message(std::string_view errmsg);

}  // namespace dingbridge::agent::dingtalk
