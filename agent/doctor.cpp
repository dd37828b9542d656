#include "agent/doctor.h"

#include <optional>
#include <string>
#include <vector>

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/contacts_api.h"
#include "agent/dingtalk/explain.h"
#include "agent/targets/ldap_check.h"
#include "agent/targets/scim_check.h"

namespace dingbridge::agent {

using dingtalk::ApiFailure;
using dingtalk::FailureKind;

namespace {

const char* headline(const ApiFailure& f, bool via_proxy) {
    switch (f.kind) {
        case FailureKind::network:
            return via_proxy ? "proxy unreachable" : "DingTalk unreachable";
        case FailureKind::proxy_refused:
            return f.proxy_status == 407   ? "proxy refused the credentials (407)"
                   : f.proxy_status == 403 ? "proxy refused the destination (403)"
                                           : "proxy could not open the tunnel";
        case FailureKind::tls:
            return "TLS/CA failure";
        case FailureKind::bad_credentials:
            return "wrong AppKey/AppSecret";
        case FailureKind::ip_denied:
            return "egress IP not on DingTalk's allow-list";
        case FailureKind::permission:
            return "missing contact permission";
        case FailureKind::quota:
            return "monthly API quota exhausted";
        default:
            return "DingTalk error";
    }
}

void estimate_full_sync(dingtalk::ContactsApi& api, std::int64_t root, const Mapping& mapping, std::ostream& out) {
    // The cost of a full sync with this mapping: departments from the recursive list, users
    // from user/count; each department costs at least one user/list page.
    std::int64_t depts = -1, users = -1;
    auto ignore = [](const ApiFailure&) {};
    api.department_tree(
        root, [&](std::vector<dingtalk::DeptSummary>&& all) { depts = static_cast<std::int64_t>(all.size()) + 1; },
        ignore);
    api.user_count([&](std::int64_t&& n) { users = n; }, ignore);
    (void)api.run();
    if (depts > 0 && users >= 0) {
        const std::int64_t gets = mapping.needs_department_get() ? depts : 1;
        const std::int64_t pages_min = depts, pages_max = depts + (users + 99) / 100;
        const std::int64_t user_gets = mapping.manager_source() == ManagerSource::dingtalk ? users : 0;
        const std::int64_t fixed = 3;  // gettoken, /department/list, listsub of the root
        out << "estimated DingTalk calls for a full sync: about " << fixed + gets + pages_max + user_gets << " ("
            << depts << " departments, " << users << " users: department/get " << gets << ", user/list " << pages_min
            << ".." << pages_max << " pages, user/get " << user_gets << ", plus 3)\n";
    } else {
        out << "estimated DingTalk calls: unknown (" << dingtalk::api::kDepartmentList << " or "
            << dingtalk::api::kUserCount << " did not answer)\n";
    }
}

}  // namespace

bool check_dingtalk(const AgentConfig& config, std::ostream& out, const Mapping* mapping, std::int64_t& calls);

bool check_online(const AgentConfig& config, std::ostream& out, const Mapping* mapping, std::int64_t* calls) {
    std::int64_t made = 0;
    bool dingtalk_ok = check_dingtalk(config, out, mapping, made);
    if (calls) *calls = made;
    // The target is checked even when DingTalk fails: the operator sees every problem at once.
    bool target_ok = config.target_type != "ldap" || check_ldap_online(config.ldap, out);
    if (config.target_type == "scim") target_ok = check_scim_online(config.scim, out);
    return dingtalk_ok && target_ok;
}

bool check_dingtalk(const AgentConfig& config, std::ostream& out, const Mapping* mapping, std::int64_t& calls) {
    const auto secrets = config.secrets();
    const bool via_proxy = !config.client.transport.proxy_url.empty();
    dingtalk::ClientSettings s = config.client;
    s.max_attempts = 2;
    s.backoff_base = std::chrono::milliseconds(100);
    dingtalk::DingTalkClient client(s);
    struct Count {  // on every return
        const dingtalk::DingTalkClient& client;
        std::int64_t& calls;
        ~Count() { calls = static_cast<std::int64_t>(client.stats().requests); }
    } count{client, calls};
    dingtalk::ContactsApi api(client);
    out << "path: "
        << (via_proxy ? "through proxy " + redact(config.client.transport.proxy_url, secrets) : std::string("direct"))
        << " to " << config.client.oapi_base << "\n";
    auto report = [&](const char* step, const ApiFailure& f) {
        out << step << ": FAIL: " << headline(f, via_proxy) << "\n  "
            << redact(dingtalk::explain_failure(f, via_proxy), secrets) << "\n";
    };
    if (auto f = client.ensure_token()) {
        report("token", *f);
        return false;
    }
    out << "token: ok (proxy, TLS, AppKey/AppSecret and egress IP accepted)\n";

    // Contact permissions: one call per API the sync uses (§2, §3 name their scopes); any
    // well-formed success proves the permission (the answer is parsed, its value not used).
    bool ok = true;
    const std::int64_t root = config.root_department;
    const char* const probes[] = {dingtalk::api::kListSub, dingtalk::api::kDepartmentGet, dingtalk::api::kUserList};
    std::vector<std::optional<ApiFailure>> results(std::size(probes));
    auto failed = [&results](std::size_t i) { return [&results, i](const ApiFailure& f) { results[i] = f; }; };
    auto ignore = [](auto&&) {};
    std::string member;  // a direct member of the root, if it has one: v2/user/get is asked about them
    api.listsub(root, ignore, failed(0));
    api.department_get(root, ignore, failed(1));
    api.user_page(
        root, 0,
        [&member](dingtalk::UserPage&& page) {
            if (!page.users.empty()) member = std::string(page.users.front().userid);
        },
        failed(2), /*size=*/1);
    if (auto f = api.run()) {
        report("contacts", *f);
        return false;
    }
    for (size_t i = 0; i < std::size(probes); ++i) {
        if (results[i]) {
            ok = false;
            report(probes[i], *results[i]);
        } else {
            out << probes[i] << ": ok\n";
        }
    }
    // v2/user/get serves user events, the removal check of a full sync and manager_source:
    // dingtalk; it is asked about a user the list just gave, so a success proves the permission.
    if (!member.empty()) {
        std::optional<ApiFailure> user_failure;
        api.user_get(member, ignore, [&user_failure](const ApiFailure& f) { user_failure = f; });
        if (auto f = api.run()) user_failure = *f;
        if (user_failure) {
            ok = false;
            report(dingtalk::api::kUserGet, *user_failure);
        } else {
            out << dingtalk::api::kUserGet << ": ok\n";
        }
    } else if (!results[2]) {
        out << dingtalk::api::kUserGet << ": not checked (department " << root
            << " has no direct member to ask about; user events and the removal check of a full sync call it)\n";
    }
    if (ok && mapping) {
        estimate_full_sync(api, root, *mapping, out);
    }
    return ok;
}

}  // namespace dingbridge::agent
