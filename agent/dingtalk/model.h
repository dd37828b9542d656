#pragma once
// Compact structs for what the agent reads from DingTalk (dingtalk-api.md §2, §3), filled by
// parse.h from the raw response. Only the fields the sync and the mapping use are kept.

#include <cstdint>
#include <string>
#include <vector>

#include "agent/org/small_string.h"

namespace dingbridge::agent::dingtalk {

struct DeptSummary {  // a /topapi/v2/department/listsub item
    std::int64_t dept_id = 0;
    std::string name;
    std::int64_t parent_id = 0;
};

struct DeptDetail {  // /topapi/v2/department/get result
    std::int64_t dept_id = 0;
    std::string name;
    std::int64_t parent_id = 0;  // 0 when absent (root, §9)
    std::int64_t order = 0;
    std::string source_identifier, brief, telephone, tags, extention, org_dept_owner;
    std::vector<std::string> manager_userids;
    bool hide_dept = false;
    bool outer_dept = false;
    bool from_union_org = false;
};

struct UserItem {  // a /topapi/v2/user/list item
    // SmallString, not std::string: a first sync holds every user's item until it is mapped.
    SmallString userid, unionid, name, avatar, state_code, mobile, telephone, job_number, title, email, org_email,
        work_place, remark, extension, exclusive_account_type, login_id;
    std::vector<std::int64_t> dept_id_list;
    std::int64_t dept_order = 0;  // in the queried department
    bool leader = false;          // of the queried department
    std::int64_t hired_date = 0;  // ms, 0 = not set
    bool has_hired_date = false;
    bool active = true, admin = false, boss = false, hide_mobile = false, exclusive_account = false;
};

struct UserPage {
    std::vector<UserItem> users;
    bool has_more = false;
    std::int64_t next_cursor = 0;
};

// A user merged over every department page that listed them.
struct MergedUser {
    UserItem item;  // fields from the first copy seen
    struct Place {
        std::int64_t dept_id = 0;
        std::int64_t order = 0;
        bool leader = false;
    };
    std::vector<Place> places;     // one per department page that listed the user
    SmallString manager_userid{};  // 直属主管, only from /topapi/v2/user/get (empty otherwise)
};

// /topapi/v2/user/get result (dingtalk-api.md §3): the list item's fields (item.dept_order and
// item.leader stay unset: get has no queried department) plus what only get carries.
// `places` holds one entry per department in dept_id_list, its order from dept_order_list and
// its leader flag from leader_in_dept, i.e. what the list pages would give for the same user.
struct UserDetail {
    UserItem item;
    std::string manager_userid;  // empty when DingTalk has none (or for ISV apps)
    std::vector<MergedUser::Place> places;

    MergedUser merged() const { return MergedUser{item, places, manager_userid}; }
};

}  // namespace dingbridge::agent::dingtalk
