#pragma once
// check-config --online for the SCIM target: reaches the server (TLS verified), checks that the
// token is accepted, and that /ResourceTypes and /Schemas offer what the target writes (User with
// the enterprise extension, Group with the department extension). Read-only.

#include <ostream>

#include "agent/targets/scim_settings.h"

namespace dingbridge::agent {

// Writes one line per step ("scim connect: ok", "scim token: FAIL: ..."); true when all passed.
bool check_scim_online(const ScimSettings& s, std::ostream& out);

}  // namespace dingbridge::agent
