#include "agent/targets/target.h"

#include <algorithm>
#include <functional>
#include <utility>

namespace dingbridge::agent {

Status ChangeWriter::write_change(const Change& c) {
    switch (c.kind) {
        case ChangeKind::create_department:
        case ChangeKind::update_department:
            if (!c.department) return fail("no department in the change");
            return put_department(*c.department);
        case ChangeKind::create_user:
        case ChangeKind::update_user:
            if (!c.user) return fail("no user in the change");
            return put_user(*c.user);
        case ChangeKind::disable_user:
            return disable_user(c.external_id, c.user);
        case ChangeKind::delete_user:
            return delete_user(c.external_id);
        case ChangeKind::delete_department:
            return delete_department(c.external_id);
    }
    return fail("unknown change");
}

void sort_primary_first(std::vector<Membership>& memberships, const std::string& primary) {
    std::sort(memberships.begin(), memberships.end(), [&primary](const Membership& a, const Membership& b) {
        return std::make_pair(a.department != primary, std::cref(a.department)) <
               std::make_pair(b.department != primary, std::cref(b.department));
    });
}

}  // namespace dingbridge::agent
