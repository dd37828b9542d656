#include "agent/dingtalk/contacts_api.h"

#include <utility>

#include "agent/dingtalk/parse.h"
#include "shared/log.h"

namespace dingbridge::agent::dingtalk {

namespace {

std::string dept_body(std::int64_t id) { return "{\"dept_id\":" + std::to_string(id) + ",\"language\":\"zh_CN\"}"; }

// The client handler for `api`: parses with `parse` and hands the value to `done`.
template <class T, class Parse>
DingTalkClient::Handler handler(const char* api, Parse parse, ContactsApi::Done<T> done) {
    return [api, parse, done = std::move(done)](std::string& body) -> std::optional<ApiFailure> {
        auto r = parse(api, body);
        if (!r.ok()) return r.failure();
        done(std::move(r.value()));
        return std::nullopt;
    };
}

// An answer about another object than the one asked for: malformed (retried, then the object
// counts as unread), never taken for the one asked for.
ApiFailure mismatch(const char* api, const std::string& got, const std::string& asked) {
    ApiFailure f;
    f.kind = FailureKind::malformed;
    f.api = api;
    f.detail = "the answer is about " + got + ", not the " + asked + " asked for";
    return f;
}

}  // namespace

void ContactsApi::department_tree(std::int64_t root, Done<std::vector<DeptSummary>> done, Failed failed) {
    client_.call_get(
        api::kDepartmentList, "id=" + std::to_string(root) + "&fetch_child=true&lang=zh_CN",
        handler<std::vector<DeptSummary>>(api::kDepartmentList, parse_legacy_department_list, std::move(done)),
        std::move(failed));
}

void ContactsApi::listsub(std::int64_t id, Done<std::vector<DeptSummary>> done, Failed failed) {
    client_.call(api::kListSub, dept_body(id),
                 handler<std::vector<DeptSummary>>(api::kListSub, parse_listsub, std::move(done)), std::move(failed));
}

void ContactsApi::department_get(std::int64_t id, Done<DeptDetail> done, Failed failed) {
    auto check = [id, done = std::move(done)](std::string& body) -> std::optional<ApiFailure> {
        auto r = parse_dept_get(api::kDepartmentGet, body);
        if (!r.ok()) return r.failure();
        // An answer about another department would stand for this one: this one would be read as
        // gone (deleted in the target), the other one as moved.
        if (r.value().dept_id != id)
            return mismatch(api::kDepartmentGet, "department " + std::to_string(r.value().dept_id),
                            "department " + std::to_string(id));
        done(std::move(r.value()));
        return std::nullopt;
    };
    client_.call(api::kDepartmentGet, dept_body(id), std::move(check), std::move(failed));
}

void ContactsApi::user_page(std::int64_t id, std::int64_t cursor, Done<UserPage> done, Failed failed, int size) {
    auto check = [cursor, done = std::move(done)](std::string& body) -> std::optional<ApiFailure> {
        auto r = parse_user_list(api::kUserList, body);
        if (!r.ok()) return r.failure();
        auto& p = r.value();
        if (p.has_more && (p.next_cursor <= cursor || p.next_cursor > kMaxUserListCursor)) {
            ApiFailure f;
            f.kind = FailureKind::api;  // DingTalk answers the same again: not retried
            f.api = api::kUserList;
            f.errmsg =
                "next_cursor " + std::to_string(p.next_cursor) + " does not advance from " + std::to_string(cursor);
            return f;
        }
        done(std::move(p));
        return std::nullopt;
    };
    client_.call(api::kUserList,
                 "{\"dept_id\":" + std::to_string(id) + ",\"cursor\":" + std::to_string(cursor) +
                     ",\"size\":" + std::to_string(size) + ",\"contain_access_limit\":true,\"language\":\"zh_CN\"}",
                 std::move(check), std::move(failed));
}

void ContactsApi::user_get(const std::string& userid, Done<UserDetail> done, Failed failed) {
    auto check = [userid, done = std::move(done)](std::string& body) -> std::optional<ApiFailure> {
        auto r = parse_user_get(api::kUserGet, body);
        if (!r.ok()) return r.failure();
        if (r.value().item.userid != userid)
            return mismatch(api::kUserGet, "user " + std::string(r.value().item.userid), "user " + userid);
        done(std::move(r.value()));
        return std::nullopt;
    };
    client_.call(api::kUserGet, "{\"userid\":\"" + json_escape(userid) + "\",\"language\":\"zh_CN\"}", std::move(check),
                 std::move(failed));
}

void ContactsApi::user_count(Done<std::int64_t> done, Failed failed) {
    client_.call(api::kUserCount, "{\"only_active\":false}",
                 handler<std::int64_t>(api::kUserCount, parse_user_count, std::move(done)), std::move(failed));
}

}  // namespace dingbridge::agent::dingtalk
