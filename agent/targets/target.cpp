#include "agent/targets/target.h"

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

}  // namespace dingbridge::agent
