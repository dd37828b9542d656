// The LDAP target in a build without OpenLDAP's client library (the portable RPM build; see
// agent/CMakeLists.txt): target.type ldap is refused at start with what to do instead.
#include <stdexcept>

#include "agent/targets/ldap_check.h"
#include "agent/targets/ldap_target.h"

namespace dingbridge::agent {

namespace {
constexpr const char* kAbsent =
    "target.type ldap: this dingbridge-agent was built without the LDAP target (the portable RPM "
    "build); use the Debian package or build from source with libldap";
}

std::unique_ptr<Target> make_ldap_target(const LdapSettings&) { throw std::runtime_error(kAbsent); }

bool check_ldap_online(const LdapSettings&, std::ostream& out) {
    out << "ldap: FAIL: " << kAbsent << "\n";
    return false;
}

}  // namespace dingbridge::agent
