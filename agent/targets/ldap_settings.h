#pragma once
// LdapSettings: the `target.ldap` section of agent.yaml (documented in configs/agent.yaml and
// docs/agent.md, "LDAP target"). Plain values, filled and checked by AgentConfig::load.

#include <chrono>
#include <string>
#include <vector>

namespace dingbridge::agent {

// One LDAP attribute of a user entry and the identity-org field it holds: username,
// display_name, email, phone, employee_number, title, union_id, avatar_url, hired_at,
// primary_department or custom.NAME.
struct LdapAttribute {
    std::string attribute;
    std::string field;
};

struct LdapSettings {
    std::string url;      // ldap://host:port (StartTLS) or ldaps://host:port
    std::string ca_file;  // "" = the system bundle
    std::string bind_dn;
    std::string bind_password;  // secret
    std::string base_dn;
    std::string departments_dn;                // parent of the root department's organizationalUnit
    std::string users_dn;                      // where active users live (flat)
    std::string removed_users_dn;              // where disabled users are moved
    std::string group_class = "groupOfNames";  // groupOfNames, groupOfUniqueNames or none
    std::string empty_group_member;            // "" = the group's own DN
    std::string department_id_attribute = "businessCategory";
    std::string user_id_attribute = "employeeNumber";
    std::string user_rdn_attribute = "uid";
    std::string manager_attribute = "manager";  // "" = do not write managers
    std::vector<LdapAttribute> user_attributes;
    int page_size = 500;
    std::chrono::milliseconds timeout{30000};

    // The member attribute of group_class (member or uniqueMember).
    const char* member_attribute() const { return group_class == "groupOfUniqueNames" ? "uniqueMember" : "member"; }
    bool groups() const { return group_class != "none"; }
    // Whether some attribute holds identity-org `field` (e.g. primary_department).
    bool maps(const std::string& field) const {
        for (const auto& a : user_attributes)
            if (a.field == field) return true;
        return false;
    }
};

}  // namespace dingbridge::agent
