#pragma once
// LdapTarget: writes the identity org into an LDAP directory (OpenLDAP's libldap; docs/agent.md,
// "LDAP target"). Departments are an organizationalUnit tree under departments_dn mirroring
// DingTalk's; each department's members are a group (groupOfNames/groupOfUniqueNames) named
// like it inside its OU; users are inetOrgPerson entries under users_dn. Every entry carries
// its DingTalk id in an attribute (department_id_attribute, user_id_attribute) and is found by
// it, never by name: a rename is a modrdn, a move a modrdn with newSuperior, and the group
// member/owner and manager values that held an old DN are rewritten.
//
// A directory has no transaction across a run: begin()/commit() only open and check the
// connection, and every apply() is idempotent (an add that finds its entry becomes a modify, a
// delete that finds nothing succeeds), so a run stopped anywhere converges on the next.
// What LDAP does not hold (order, custom fields not mapped, ...) is dropped from the desired
// org by normalize() so that a resync with no change in DingTalk plans nothing.
// Not thread-safe; one connection.

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/targets/ldap_settings.h"
#include "agent/targets/target.h"

typedef struct ldap LDAP;

namespace dingbridge::agent {

// Connects, upgrades to TLS (StartTLS for ldap://) and binds. Returns nullptr and sets `error`
// (prefixed with the step that failed: "connect", "TLS", "bind") on failure.
struct LdapDeleter {
    void operator()(LDAP* ld) const;
};
using LdapHandle = std::unique_ptr<LDAP, LdapDeleter>;
LdapHandle ldap_open_session(const LdapSettings& s, std::string& step, std::string& error);

// RFC 4514 escaping of one RDN value.
std::string ldap_escape_rdn_value(const std::string& v);

// The configured LDAP target; throws std::runtime_error when this build has none (ldap_absent.cpp).
std::unique_ptr<Target> make_ldap_target(const LdapSettings& settings);

class LdapTarget : public Target, private ChangeWriter {
public:
    explicit LdapTarget(LdapSettings settings);
    ~LdapTarget() override;

    void normalize(OrgSnapshot& desired) override;
    void fill_required(OrgUser& user) const override;
    std::string (*username_key() const)(std::string_view) override;
    void resolve_name_clashes(OrgSnapshot& desired, const OrgSnapshot& current) const override;
    void planned(const SyncPlan& plan) override;
    Result<OrgSnapshot> read() override;
    Status begin() override;
    Status apply(const Change& change) override;
    Status commit() override;
    void rollback() override {}

private:
    struct Dept {
        std::string dn;        // the organizationalUnit ("" = not in the directory)
        std::string group_dn;  // "" = no group
        std::string name;
        // Member values: lower-cased DN -> as stored; placeholders (an empty group's value) apart,
        // so that adding or removing one member costs O(1) however large the group.
        std::unordered_map<std::string, std::string> members;
        std::vector<std::string> placeholders;
        // Values naming an entry under users_dn/removed_users_dn that is no user any more (left
        // by a run stopped between a user's modrdn and the rewrite of its references).
        std::vector<std::string> stale;
        std::vector<std::string> owners;
    };
    struct User {
        std::string dn;
        bool removed = false;
        std::set<std::string> groups;  // department ids
        std::string manager_dn;
    };

    struct GroupRead;  // a group entry as read, before its members are resolved

    Status connect();
    void rollback_connection();
    Status read_departments(OrgSnapshot& snap, std::unordered_map<std::string, GroupRead>& groups);
    Status read_users(OrgSnapshot& snap);
    void read_groups(OrgSnapshot& snap, std::unordered_map<std::string, GroupRead>& groups);
    // The message for a failed search of `base` (with the size-limit hint).
    std::string search_error(const std::string& base,
                             int rc) const;  // drops a lost connection; the next call reconnects
    Status ensure_container(const std::string& dn);
    Status put_department(const OrgDepartment& d) override;
    Status add_department_entry(const OrgDepartment& d, Dept& cur, const std::string& want,
                                std::vector<std::string>& desc);
    Status update_department_entry(Dept& cur, const std::string& rdn, const std::string& parent_dn,
                                   const std::string& want, const std::vector<std::string>& desc);
    Status put_department_group(const OrgDepartment& d, Dept& cur);
    Status put_user(const OrgUser& u) override;
    Status put_memberships(User& cur, const OrgUser& u);
    // Moves the entry under removed_users_dn (`kept` is not used).
    Status disable_user(const std::string& id, const OrgUser* kept) override;
    Status delete_user(const std::string& id) override;
    Status delete_department(const std::string& id) override;
    Status add_member(const std::string& dept_id, const std::string& user_dn);
    Status remove_member(const std::string& dept_id, const std::string& user_dn);
    Status rename_references(const std::string& old_dn, const std::string& new_dn);
    Status set_owners(Dept& d, const std::vector<std::string>& leaders);
    Status refresh_placeholder(Dept& d);
    std::string user_dn_for(const std::string& id) const;
    // The DN `u` is written at (users_dn and its RDN value); empty when it has no RDN value.
    std::string user_dn(const OrgUser& u) const;
    std::string placeholder(const Dept& d) const;
    bool is_placeholder(const Dept& d, const std::string& value) const;
    // The last operation's error text with the server's diagnostic message.
    std::string ldap_error(const std::string& what, int rc) const;

    LdapSettings s_;
    LDAP* ld_ = nullptr;
    std::chrono::steady_clock::time_point down_until_{};
    std::string down_error_;
    std::unordered_map<std::string, Dept> depts_;
    std::unordered_map<std::string, User> users_;
    std::unordered_map<std::string, std::string> user_by_dn_;  // lower-cased DN -> id
    // id -> DN for users of the desired org as the run leaves them (normalize(), then planned()
    // and each write); empty for a user whose entry could not be written.
    std::unordered_map<std::string, std::string> desired_dn_;
};

}  // namespace dingbridge::agent
