#pragma once
// ScimTarget: writes the identity org to a SCIM 2.0 service provider (RFC 7643/7644; docs/agent.md,
// "SCIM target"). Users are User resources (core schema + the enterprise extension:
// employeeNumber, department, manager); departments are Group resources (displayName, members)
// with the parent department's DingTalk id in an extension attribute (target.scim
// department_schema:parent_attribute). Both carry the DingTalk id as externalId and are found by
// it, never by name. Updates are PATCH operations of only what changed when the server's
// /ServiceProviderConfig supports PATCH, full PUTs otherwise.
//
// SCIM has no transaction: begin()/commit() do nothing, and every apply() is idempotent — a
// create whose answer was lost is looked up by externalId before it is retried, a 409 on a create
// first checks whether the resource is ours, a delete that finds nothing succeeds, member
// changes are computed against the server's state read at the start of the run — so a run
// stopped anywhere converges on the next. What SCIM does not hold (order, leaders, custom
// fields, ...) is dropped by normalize() so that a resync with no change plans nothing.
// A 409 "uniqueness" on a user is handled by sync.conflict_policy: clear_field writes the user
// with its DingTalk id as userName, skip_user leaves it out; both are recorded as the change's
// error. Not thread-safe.

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/org/plan.h"
#include "agent/targets/scim_client.h"
#include "agent/targets/scim_settings.h"
#include "agent/targets/target.h"
#include "shared/match_key.h"

namespace dingbridge::agent {

inline constexpr const char* kScimUserSchema = "urn:ietf:params:scim:schemas:core:2.0:User";
inline constexpr const char* kScimGroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group";
inline constexpr const char* kScimEnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

class ScimTarget : public Target {
public:
    ScimTarget(ScimSettings settings, ConflictPolicy conflict_policy);

    void normalize(OrgSnapshot& desired) override;
    void fill_required(OrgUser& user) const override;
    bool wants_managers_first() const override { return true; }  // a manager's id is the server's
    std::string (*username_key() const)(std::string_view) override { return scim_match_key; }  // caseExact false
    Result<OrgSnapshot> read() override;
    Status begin() override;
    Status apply(const Change& change) override;
    // The member additions and removals of user creates/updates/disables are deferred and sent
    // per group over the whole run (members_per_request per PATCH or PUT): before any other kind
    // of change, when a group has that many waiting, and at finish_batches(). A request the server
    // refuses (4xx, 500) is split in halves until the refused members are found: only their
    // changes fail (reported by finish_batches()).
    void apply_batch(const Change* changes, std::size_t n, std::vector<Status>& outcomes) override;
    std::vector<std::pair<const Change*, std::string>> finish_batches() override;
    std::vector<std::pair<std::string, std::string>> take_settled_conflicts() override {
        return std::exchange(settled_, {});
    }
    Status commit() override;
    void rollback() override;

    std::uint64_t requests_made() const { return client_.requests_made(); }

private:
    struct Group {
        std::string id;  // SCIM id
        OrgDepartment row;
        std::set<std::string> members;  // SCIM ids of users
    };
    struct User {
        std::string id;
        OrgUser row;  // as the server holds it (manager and departments as DingTalk ids)
    };

    std::optional<std::string> discover();
    std::optional<std::string> read_groups(OrgSnapshot& snap);
    std::optional<std::string> read_users(OrgSnapshot& snap);
    std::optional<std::string> put_department(const OrgDepartment& d);
    std::optional<std::string> put_user(const OrgUser& u);
    std::vector<std::pair<std::string, std::string>> settled_;  // take_settled_conflicts()
    // Creates or updates the user with `username` as userName; `conflict` is set on a 409.
    std::optional<std::string> write_user(const OrgUser& u, const std::string& username, bool& conflict);
    std::optional<std::string> create_user(const OrgUser& u, const std::string& username, bool& conflict);
    std::optional<std::string> update_user(User& cur, const OrgUser& u, const std::string& username, bool& conflict);
    std::vector<std::string> user_patch(const OrgUser& cur, const OrgUser& want) const;
    std::optional<std::string> set_memberships(User& cur, const OrgUser& u);
    std::optional<std::string> change_member(const std::string& dept, const std::string& user_id, bool add);
    // A member change waiting to be sent: add or remove `user_id`, for `change` (of apply_batch()).
    struct MemberChange {
        std::string user_id;
        bool add = true;
        const Change* change = nullptr;
    };
    // One PATCH (or PUT) with these member changes of a group; the error and the HTTP status.
    std::optional<std::string> send_member_changes(const std::string& dept, const MemberChange* list, std::size_t n,
                                                   long& status);
    // Sends list[0..n), splitting a refused request in halves; failures go to late_failures_.
    void send_or_split(const std::string& dept, const MemberChange* list, std::size_t n);
    void flush_group(const std::string& dept);
    void flush_members();
    // One change; the error message, or nullopt on success (apply() and apply_batch() wrap it).
    std::optional<std::string> apply_change(const Change& change);
    std::optional<std::string> link_waiting_reports(const std::string& manager_external_id);
    std::optional<std::string> delete_resource(const std::string& endpoint, const std::string& id);
    std::optional<std::string> delete_user(const std::string& external_id);
    std::optional<std::string> delete_department(const std::string& external_id);
    // The SCIM id of the resource with this externalId on the server ("" = none).
    std::string find_by_external_id(const std::string& endpoint, const std::string& external_id, std::string& error);
    std::string user_json(const OrgUser& u) const;
    std::string group_json(const Group& g, const OrgDepartment& d) const;
    // Adopts a resource found by externalId that read() did not see (a create whose answer was lost).
    void adopt_user(const std::string& external_id, const std::string& id);
    std::string manager_id(const OrgUser& u) const;

    // The DingTalk id in a resource's externalId, or "" when the resource is not ours (no
    // externalId, or not under external_id_prefix).
    std::string ours(std::string external_id) const;
    ScimSettings s_;
    ConflictPolicy conflict_policy_;
    ScimClient client_;
    bool discovered_ = false;
    bool patch_ = false;
    std::unordered_map<std::string, Group> groups_;            // by DingTalk id
    std::unordered_map<std::string, User> users_;              // by DingTalk id (active and disabled)
    std::unordered_map<std::string, std::string> user_by_id_;  // SCIM id -> DingTalk id
    // Users written without their manager because the manager had no SCIM id yet:
    // manager's DingTalk id -> the users waiting for it.
    std::unordered_map<std::string, std::vector<std::string>> waiting_for_manager_;
    // Second resources with an externalId already seen (a create applied after its request timed
    // out and was retried): DingTalk id -> SCIM ids. read() marks the first one changed so that the
    // plan updates it, and the update deletes them.
    std::unordered_map<std::string, std::vector<std::string>> duplicate_groups_, duplicate_users_;
    std::optional<std::string> delete_duplicates(const std::string& endpoint, const std::string& external_id);
    // Between the first apply_batch() and finish_batches(): member changes wait per group
    // (department -> user SCIM id -> change), and deferred failures are collected.
    bool batching_ = false;
    const Change* current_ = nullptr;  // the change being applied
    std::map<std::string, std::map<std::string, MemberChange>> pending_members_;
    std::vector<std::pair<const Change*, std::string>> late_failures_;
};

std::unique_ptr<Target> make_scim_target(const ScimSettings& settings, ConflictPolicy conflict_policy);

}  // namespace dingbridge::agent
