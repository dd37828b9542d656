#pragma once
// Mapping: how each identity-org field is computed from DingTalk fields (mapping.yaml, documented
// in configs/mapping.yaml). Loaded and compiled once: templates like
//   "{{ email | email_local | default(job_number) | lower }}"
// become a small program of field reads and filters whose types are checked at load, so an
// unknown source field, an unknown filter or a type mistake (lower on a number, a string into
// `active`) is a ConfigError with file:line:column. Also holds what to sync (department subtrees
// to include/exclude, users to skip) and what a removed user becomes. Evaluation is pure and
// never fails: the compiled program is total over the DingTalk model. Immutable after load;
// safe to share between threads. The parts: template.h (the template compiler), filters.h
// (evaluation), scope.h (include/exclude/skip rules); this file loads mapping.yaml.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/dingtalk/model.h"
#include "agent/mapping/filters.h"
#include "agent/mapping/scope.h"
#include "agent/mapping/template.h"
#include "agent/org/plan.h"
#include "agent/org/schema.h"

namespace dingbridge::agent {

enum class RemovedUserAction { disable, del };

// Where a user's manager comes from (sync.manager_source).
enum class ManagerSource {
    leaders,   // the first leader of the primary department (or the nearest ancestor with one)
    dingtalk,  // DingTalk's manager_userid (直属主管), one /topapi/v2/user/get per user
};

class Mapping {
public:
    // Throws ConfigError.
    static Mapping load_file(const std::string& path);
    static Mapping load_string(const std::string& text, const std::string& name = "mapping.yaml");

    // Field values only; structure (parent, leaders, memberships, manager) is set by the sync.
    OrgDepartment map_department(const dingtalk::DeptDetail& d) const;
    OrgUser map_user(const dingtalk::UserItem& u) const;
    bool skip_user(const dingtalk::UserItem& u) const;

    const std::vector<std::int64_t>& include_departments() const { return scope_.include_departments(); }
    const std::set<std::int64_t>& exclude_departments() const { return scope_.exclude_departments(); }
    RemovedUserAction removed_user_action() const { return removed_action_; }
    // With `disable`: delete users disabled longer than this (0 = never).
    std::chrono::seconds delete_after() const { return delete_after_; }
    ConflictPolicy conflict_policy() const { return conflict_policy_; }
    // Whether the department templates read a field only /topapi/v2/department/get carries
    // (anything but dept_id, name, parent_id). When not, a full sync skips department/get and
    // takes department leaders from the user pages' leader flags.
    bool needs_department_get() const;
    // True when a user template or a skip rule reads the user source field `name` ("admin"):
    // an event that changes only that field costs no call when nothing reads it.
    bool reads_user_field(std::string_view name) const;
    ManagerSource manager_source() const { return manager_source_; }

private:
    std::map<std::string, Template> dept_;  // schema field (or custom.NAME) -> template
    std::map<std::string, Template> user_;
    ScopeRules scope_;
    RemovedUserAction removed_action_ = RemovedUserAction::disable;
    std::chrono::seconds delete_after_{0};
    ConflictPolicy conflict_policy_ = ConflictPolicy::clear_field;
    ManagerSource manager_source_ = ManagerSource::leaders;
    EvalContext eval_;  // phone.default_country_code, dates.utc_offset
    friend struct MappingLoader;
};

}  // namespace dingbridge::agent
