#pragma once
// Mapping: how each identity-org field is computed from DingTalk fields (mapping.yaml, documented
// in configs/mapping.yaml). Loaded and compiled once: templates like
//   "{{ email | email_local | default(job_number) | lower }}"
// become a small program of field reads and filters whose types are checked at load, so an
// unknown source field, an unknown filter or a type mistake (lower on a number, a string into
// `active`) is a ConfigError with file:line:column. Also holds what to sync (department subtrees
// to include/exclude, users to skip) and what a removed user becomes. Evaluation is pure and
// never fails: the compiled program is total over the DingTalk model. Immutable after load;
// safe to share between threads.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "agent/dingtalk/model.h"
#include "agent/org/plan.h"
#include "agent/org/schema.h"
#include "shared/config.h"

namespace dingbridge::agent {

enum class ValueType { string, integer, boolean, list };
using Value = std::variant<std::string, std::int64_t, bool, std::vector<std::string>>;

struct Filter {
    enum class Op {
        lower,
        upper,
        trim,
        email_local,
        e164,
        date,
        default_field,
        default_literal,
        json_key,
        join,
        first,
        count
    };
    Op op = Op::lower;
    int field = -1;       // default_field
    std::string literal;  // default_literal, date format, e164 country code, json key, join separator
};

struct Expr {
    int field = -1;
    std::vector<Filter> filters;
    ValueType type = ValueType::string;
};

// Literal text and {{ }} expressions, or one constant.
struct Template {
    struct Part {
        std::string text;
        std::optional<Expr> expr;
    };
    std::vector<Part> parts;
    ValueType type = ValueType::string;
};

enum class RemovedUserAction { disable, del };

// Where a user's manager comes from (sync.manager_source).
enum class ManagerSource {
    leaders,   // the first leader of the primary department (or the nearest ancestor with one)
    dingtalk,  // DingTalk's manager_userid (直属主管), one /topapi/v2/user/get per user
};

struct SkipRule {
    int field = -1;
    std::string equals;
};

class Mapping {
public:
    // Throws ConfigError.
    static Mapping load_file(const std::string& path);
    static Mapping load_string(const std::string& text, const std::string& name = "mapping.yaml");
    static Mapping from_node(const ConfigNode& root, const YAML::Node& raw, const std::string& source);

    // Field values only; structure (parent, leaders, memberships, manager) is set by the sync.
    OrgDepartment map_department(const dingtalk::DeptDetail& d) const;
    OrgUser map_user(const dingtalk::UserItem& u) const;
    bool skip_user(const dingtalk::UserItem& u) const;

    const std::vector<std::int64_t>& include_departments() const { return include_; }
    const std::set<std::int64_t>& exclude_departments() const { return exclude_; }
    RemovedUserAction removed_user_action() const { return removed_action_; }
    // With `disable`: delete users disabled longer than this (0 = never).
    std::chrono::seconds delete_after() const { return delete_after_; }
    ConflictPolicy conflict_policy() const { return conflict_policy_; }
    // Whether the department templates read a field only /topapi/v2/department/get carries
    // (anything but dept_id, name, parent_id). When not, a full sync skips department/get and
    // takes department leaders from the user pages' leader flags.
    bool needs_department_get() const;
    ManagerSource manager_source() const { return manager_source_; }

private:
    std::map<std::string, Template> dept_;  // schema field (or custom.NAME) -> template
    std::map<std::string, Template> user_;
    std::vector<SkipRule> skip_;
    std::vector<std::int64_t> include_;
    std::set<std::int64_t> exclude_;
    RemovedUserAction removed_action_ = RemovedUserAction::disable;
    std::chrono::seconds delete_after_{0};
    ConflictPolicy conflict_policy_ = ConflictPolicy::clear_field;
    ManagerSource manager_source_ = ManagerSource::leaders;
    std::string default_country_ = "86";
    int tz_offset_minutes_ = 8 * 60;  // DingTalk timestamps are midnight China time
    friend struct MappingCompiler;
};

// Exposed for tests.
std::string phone_to_e164(const std::string& number, const std::string& country_code);
std::string format_ms_date(std::int64_t ms, int tz_offset_minutes, const std::string& format);

}  // namespace dingbridge::agent
