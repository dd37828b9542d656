#pragma once
// What a sync keeps (mapping.yaml `sync:` include_departments, exclude_departments, skip_users):
// department subtrees to include or exclude, and users to skip by a source field's value.
// Loaded with the mapping (ConfigError with file:line on a bad rule); immutable afterwards.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "agent/dingtalk/model.h"
#include "agent/mapping/template.h"
#include "shared/config.h"

namespace dingbridge::agent {

struct SkipRule {
    int field = -1;  // a user source field id
    std::string equals;
};

class ScopeRules {
public:
    // Reads the scope keys of the `sync` section; `users` names the user source fields.
    void load(const ConfigNode& sync, const TemplateCompiler& users);

    const std::vector<std::int64_t>& include_departments() const { return include_; }
    const std::set<std::int64_t>& exclude_departments() const { return exclude_; }
    bool skip_user(const dingtalk::UserItem& u) const;
    bool reads_user_field(int field) const {
        for (const auto& r : skip_)
            if (r.field == field) return true;
        return false;
    }

private:
    std::vector<SkipRule> skip_;
    std::vector<std::int64_t> include_;
    std::set<std::int64_t> exclude_;
};

}  // namespace dingbridge::agent
