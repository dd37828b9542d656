#pragma once
// The DingTalk source fields, one table per record (dingtalk-api.md §2 department/get, §3
// user/list and user/get): the JSON key and the member of the model struct that holds it. The
// parser reads each key into its member from this table, and the mapping offers, type-checks and
// reads exactly these fields (`{{ job_number }}`), by their position in the table — so a field is
// added in one place. Per-page fields of a user (its order and leader flag in the queried
// department) are parsed but not offered to the mapping.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/dingtalk/model.h"

namespace dingbridge::agent::dingtalk {

template <class Record>
using FieldMember = std::variant<std::string Record::*, SmallString Record::*, std::int64_t Record::*, bool Record::*,
                                 std::vector<std::int64_t> Record::*, std::vector<std::string> Record::*>;

template <class Record>
struct SourceField {
    std::string_view key;
    FieldMember<Record> member;
};

inline const SourceField<UserItem> kUserFields[] = {
    {"userid", &UserItem::userid},
    {"unionid", &UserItem::unionid},
    {"name", &UserItem::name},
    {"avatar", &UserItem::avatar},
    {"state_code", &UserItem::state_code},
    {"mobile", &UserItem::mobile},
    {"telephone", &UserItem::telephone},
    {"job_number", &UserItem::job_number},
    {"title", &UserItem::title},
    {"email", &UserItem::email},
    {"org_email", &UserItem::org_email},
    {"work_place", &UserItem::work_place},
    {"remark", &UserItem::remark},
    {"extension", &UserItem::extension},
    {"exclusive_account_type", &UserItem::exclusive_account_type},
    {"login_id", &UserItem::login_id},
    {"hired_date", &UserItem::hired_date},  // ms since the epoch, 0 = not set
    {"active", &UserItem::active},
    {"admin", &UserItem::admin},
    {"boss", &UserItem::boss},
    {"hide_mobile", &UserItem::hide_mobile},
    {"exclusive_account", &UserItem::exclusive_account},
    {"dept_id_list", &UserItem::dept_id_list},
};

// In a v2/user/list item only: about the queried department.
inline const SourceField<UserItem> kUserPageFields[] = {
    {"dept_order", &UserItem::dept_order},
    {"leader", &UserItem::leader},
};

inline const SourceField<DeptDetail> kDeptFields[] = {
    {"dept_id", &DeptDetail::dept_id},
    {"name", &DeptDetail::name},
    {"parent_id", &DeptDetail::parent_id},
    {"order", &DeptDetail::order},
    {"source_identifier", &DeptDetail::source_identifier},
    {"brief", &DeptDetail::brief},
    {"telephone", &DeptDetail::telephone},
    {"tags", &DeptDetail::tags},
    {"extention", &DeptDetail::extention},  // sic: DingTalk's spelling
    {"org_dept_owner", &DeptDetail::org_dept_owner},
    {"hide_dept", &DeptDetail::hide_dept},
    {"outer_dept", &DeptDetail::outer_dept},
    {"from_union_org", &DeptDetail::from_union_org},
    {"dept_manager_userid_list", &DeptDetail::manager_userids},
};

// The first kDeptListedFields of kDeptFields are in every department listing (listsub,
// /department/list); the others need department/get.
inline constexpr std::size_t kDeptListedFields = 3;

// The entry for `key` in `table`, or nullptr.
template <class Record, std::size_t N>
const SourceField<Record>* find_field(const SourceField<Record> (&table)[N], std::string_view key) {
    for (const auto& f : table)
        if (f.key == key) return &f;
    return nullptr;
}

}  // namespace dingbridge::agent::dingtalk
