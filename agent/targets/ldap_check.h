#pragma once
// check-config --online for the LDAP target: connects, upgrades to TLS, binds, reads the base
// DN and the server's schema, and says which step failed and what to do. Read-only.

#include <ostream>

#include "agent/targets/ldap_settings.h"

namespace dingbridge::agent {

// Writes one line per step ("ldap connect: ok", "ldap bind: FAIL: ..."); true when all passed.
bool check_ldap_online(const LdapSettings& s, std::ostream& out);

}  // namespace dingbridge::agent
