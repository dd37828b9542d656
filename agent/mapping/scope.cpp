#include "agent/mapping/scope.h"

#include <cstdint>

#include "agent/mapping/filters.h"

namespace dingbridge::agent {

namespace {

void read_ids(const ConfigNode& list, std::vector<std::int64_t>& out) {
    if (!list.is_sequence()) list.fail("must be a list of DingTalk department ids");
    for (const auto& item : list.items()) out.push_back(item.as_int(1, INT64_MAX));
}

}  // namespace

void ScopeRules::load(const ConfigNode& sync, const TemplateCompiler& users) {
    if (auto inc = sync.find("include_departments")) read_ids(*inc, include_);
    if (auto exc = sync.find("exclude_departments")) {
        std::vector<std::int64_t> v;
        read_ids(*exc, v);
        exclude_.insert(v.begin(), v.end());
        for (auto id : include_)
            if (exclude_.count(id))
                exc->fail("department " + std::to_string(id) + " is in include_departments too: it would sync nothing");
    }
    if (auto skip = sync.find("skip_users")) {
        if (!skip->is_sequence()) skip->fail("must be a list of {field, equals} rules");
        for (const auto& rule : skip->items()) {
            SkipRule r;
            auto f = rule.get("field");
            r.field = users.field_id(f.as_string());
            if (r.field < 0) f.fail("unknown source field '" + f.as_string() + "' (known: " + users.field_list() + ")");
            r.equals = rule.get("equals").as_string();
            rule.reject_unknown();
            skip_.push_back(r);
        }
    }
}

bool ScopeRules::skip_user(const dingtalk::UserItem& u) const {
    for (const auto& r : skip_)
        if (to_text(user_field(u, r.field)) == r.equals) return true;
    return false;
}

}  // namespace dingbridge::agent
