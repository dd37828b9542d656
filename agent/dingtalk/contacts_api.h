#pragma once
// ContactsApi: the typed DingTalk contacts API the sync and the event processor call
// (dingtalk-api.md §2-§3). It alone knows the request paths, the JSON bodies, which parser reads
// each answer and the checks on an answer (a user-list cursor must advance). Calls are queued on
// the DingTalkClient and run by its run(); `done` gets the parsed value, `failed` the failure
// after the client's retries (each call is one metered call, retries aside). Single-threaded like
// the client; the callbacks run inside DingTalkClient::run() and may queue more calls.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/model.h"

namespace dingbridge::agent::dingtalk {

namespace api {
inline constexpr const char* kDepartmentList = "/department/list";  // legacy GET, recursive
inline constexpr const char* kListSub = "/topapi/v2/department/listsub";
inline constexpr const char* kDepartmentGet = "/topapi/v2/department/get";
inline constexpr const char* kUserList = "/topapi/v2/user/list";
inline constexpr const char* kUserGet = "/topapi/v2/user/get";
inline constexpr const char* kUserCount = "/topapi/user/count";
}  // namespace api

class ContactsApi {
public:
    template <class T>
    using Done = std::function<void(T&&)>;
    using Failed = DingTalkClient::Failed;

    explicit ContactsApi(DingTalkClient& client) : client_(client) {}

    // Every descendant of `root` in one call (GET /department/list?fetch_child=true).
    void department_tree(std::int64_t root, Done<std::vector<DeptSummary>> done, Failed failed);
    // The direct children of `id`.
    void listsub(std::int64_t id, Done<std::vector<DeptSummary>> done, Failed failed);
    void department_get(std::int64_t id, Done<DeptDetail> done, Failed failed);
    // One page (at most `size` users, 1..100; contain_access_limit) of the users of department
    // `id` from `cursor`. A page that says has_more without advancing its cursor is an api
    // failure (not retried: DingTalk would answer the same again).
    void user_page(std::int64_t id, std::int64_t cursor, Done<UserPage> done, Failed failed, int size = 100);
    // An unknown or departed user fails with FailureKind::not_found.
    void user_get(const std::string& userid, Done<UserDetail> done, Failed failed);
    void user_count(Done<std::int64_t> done, Failed failed);

    std::optional<ApiFailure> run(const std::function<void()>& tick = {}) { return client_.run(tick); }
    DingTalkClient& client() { return client_; }

private:
    DingTalkClient& client_;
};

// The largest cursor DingTalk's user list gives (offset paging, §3): anything beyond is broken.
inline constexpr std::int64_t kMaxUserListCursor = 100000;

}  // namespace dingbridge::agent::dingtalk
