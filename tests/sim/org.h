#pragma once
// The simulated DingTalk organisation: departments (a tree rooted at dept_id 1) and users who
// belong to one or more departments, plus the departed-user records served by empLeaveRecords.
//
// Org owns every Department and User (stable addresses: pointers handed out stay valid until the
// object is removed). It keeps the indexes the endpoints need so that no request does O(org)
// work: children per department, members per department, and lazily built sorted member views
// per (order_field, contain_access_limit), invalidated only for departments a mutation touches.
// Field names follow dingtalk-api.md §2/§3; the fixture format is the department/get and
// user/get result shapes (README.md "Fixture format"). Not thread-safe: the simulator's single
// event-loop thread owns it.

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tests/sim/json.h"

namespace sim {

struct Department {
    int64_t dept_id = 0;
    std::string name;
    int64_t parent_id = 0;  // 0 only for the root
    int64_t order = 0;
    std::string source_identifier, brief, telephone, tags, extention, ext;
    std::string org_dept_owner;
    bool hide_dept = false;
    std::vector<std::string> user_permits;
    std::vector<int64_t> dept_permits;
    bool outer_dept = false;
    std::vector<int64_t> outer_permit_depts;
    std::vector<std::string> outer_permit_users;
    bool create_dept_group = false, auto_add_user = false, auto_approve_apply = false, group_contain_sub_dept = false;
    std::string dept_group_chat_id;
    bool from_union_org = false;

    // Indexes maintained by Org.
    std::vector<int64_t> children_;            // sorted by (order, dept_id)
    std::vector<const struct User*> members_;  // direct members, unsorted
    std::vector<std::string> leaders_;         // derived from members' leader flags
};

struct UserDept {
    int64_t dept_id = 0;
    int64_t order = 0;
    bool leader = false;
};

struct Role {
    int64_t id = 0;
    std::string name, group_name;
};

struct User {
    std::string userid, unionid, name, avatar, state_code, mobile;
    bool hide_mobile = false;
    std::string telephone, job_number, title, email, org_email, work_place, remark;
    std::vector<UserDept> depts;  // first entry is the main department
    std::string extension;        // a JSON-object string, as DingTalk sends it
    int64_t hired_date = 0;       // ms; 0 = not set (omitted)
    bool active = true, admin = false, boss = false, exclusive_account = false;
    std::string exclusive_account_type, login_id;
    std::string manager_userid;
    bool senior = false, real_authed = false;
    std::string org_email_type;
    std::vector<Role> roles;
    // Simulator-only: hidden from user/list unless contain_access_limit=true (§3, §9).
    bool access_limited = false;
    int64_t modify_time = 0;  // ms; drives order_field=modify_*

    const UserDept* in_dept(int64_t dept_id) const {
        for (const auto& d : depts)
            if (d.dept_id == dept_id) return &d;
        return nullptr;
    }
};

struct LeaveRecord {
    std::string user_id, name, state_code, mobile;
    int64_t leave_time_ms = 0;
    std::string leave_reason;  // oapi | cancel | leave | unknown | delete
};

enum class OrderField { custom = 0, entry_asc, entry_desc, modify_asc, modify_desc };
std::optional<OrderField> parse_order_field(std::string_view s);

// A contact change, as the mutation that caused it describes it; events.* turns it into
// stream frames and HTTP pushes.
struct OrgEvent {
    std::string event_type;  // user_add_org, org_dept_modify, ...
    std::vector<std::string> user_ids;
    std::vector<int64_t> dept_ids;
};

// Result of an operation that may fail on peer input: empty error = success.
struct Status {
    std::string error;
    bool ok() const { return error.empty(); }
    static Status fail(std::string e) { return Status{std::move(e)}; }
};

struct GenerateSpec {
    int64_t users = 100;
    int64_t departments = 10;  // besides the root
    int depth = 3;
    uint64_t seed = 1;
};
// Parses "users=N,departments=M,depth=D,seed=S" (any subset, any order).
Status parse_generate_spec(std::string_view text, GenerateSpec& out);

struct OrgOptions {
    bool root_parent_zero = false;  // §9: root's parent_id absent (default) or 0
};

class Org {
public:
    explicit Org(OrgOptions opts = {});

    // Builds a deterministic org: same spec gives byte-identical dumps on every machine.
    static std::unique_ptr<Org> generate(const GenerateSpec& spec, OrgOptions opts = {});
    // Loads the fixture JSON; returns nullptr and sets error (with the offending item) on failure.
    static std::unique_ptr<Org> load(std::string_view json, std::string& error, OrgOptions opts = {});
    std::string dump() const;

    const Department* dept(int64_t id) const;
    const User* user(std::string_view userid) const;
    size_t user_count(bool only_active) const;
    size_t dept_count() const { return depts_.size(); }
    const std::vector<LeaveRecord>& leave_records() const { return leave_records_; }
    // Self first, up to the root (§2 listparentbydept; order noted uncertain in §9).
    std::vector<int64_t> parent_chain(int64_t dept_id) const;
    // Direct members in page order; the reference is valid until the next mutation.
    const std::vector<const User*>& members(const Department& d, OrderField f, bool include_access_limited) const;

    // Serialisers for the endpoint shapes.
    void write_dept_get(JsonWriter& w, const Department& d) const;
    void write_listsub_item(JsonWriter& w, const Department& d) const;
    void write_user_list_item(JsonWriter& w, const User& u, int64_t queried_dept) const;
    void write_user_get(JsonWriter& w, const User& u, bool sim_fields = false) const;

    // Mutations (admin endpoints). Each validates the JSON object, applies it and appends the
    // events DingTalk would emit. Partial updates: only present keys change.
    Status create_dept(simdjson::dom::object fields, std::vector<OrgEvent>& events, int64_t* created_id = nullptr);
    Status update_dept(simdjson::dom::object fields, std::vector<OrgEvent>& events);
    Status remove_dept(int64_t dept_id, std::vector<OrgEvent>& events);
    Status create_user(simdjson::dom::object fields, std::vector<OrgEvent>& events);
    Status update_user(simdjson::dom::object fields, std::vector<OrgEvent>& events);
    Status remove_user(std::string_view userid, std::string_view reason, int64_t now_ms, std::vector<OrgEvent>& events);

private:
    Status insert_dept(std::unique_ptr<Department> d);
    Status insert_user(std::unique_ptr<User> u);
    void attach_member(const User& u);
    void detach_member(const User& u);
    void touch_dept(int64_t dept_id);
    void resort_children(Department& parent);
    Status validate_user(const User& u) const;
    void finish_bulk();  // builds the derived per-department data skipped while loading

    OrgOptions opts_;
    std::map<int64_t, std::unique_ptr<Department>> depts_;
    std::unordered_map<std::string, std::unique_ptr<User>> users_;
    std::vector<LeaveRecord> leave_records_;
    int64_t next_dept_id_ = 2;
    size_t inactive_users_ = 0;
    bool bulk_ = false;  // loading: skip per-insert index upkeep

    struct ViewCache {
        std::array<std::vector<const User*>, 10> views;
        std::array<bool, 10> valid{};
    };
    mutable std::unordered_map<int64_t, ViewCache> views_;
};

// ISO-8601 helpers for empLeaveRecords: "2024-01-02T03:04:05Z", also "...T03:04Z",
// fractional seconds and "+08:00" offsets. Returns nullopt on anything else.
std::optional<int64_t> parse_iso8601_ms(std::string_view s);
std::string format_iso8601(int64_t ms);

}  // namespace sim
