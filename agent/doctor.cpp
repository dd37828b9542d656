#include "agent/doctor.h"

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/explain.h"
#include "agent/dingtalk/parse.h"
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

// Whether a probe's answer is a well-formed success.
std::optional<ApiFailure> check_probe_answer(const std::string& api, std::string& body) {
    // Any well-formed success proves the permission; parse to check the envelope.
    if (api == "/topapi/v2/user/list") {
        auto r = dingtalk::parse_user_list(api, body);
        return r.ok() ? std::nullopt : std::optional<ApiFailure>(r.failure());
    }
    if (api == "/topapi/v2/department/get") {
        auto r = dingtalk::parse_dept_get(api, body);
        return r.ok() ? std::nullopt : std::optional<ApiFailure>(r.failure());
    }
    auto r = dingtalk::parse_listsub(api, body);
    return r.ok() ? std::nullopt : std::optional<ApiFailure>(r.failure());
}

void estimate_full_sync(dingtalk::DingTalkClient& client, const std::string& root, const Mapping& mapping,
                        std::ostream& out) {
    // The cost of a full sync with this mapping: departments from the recursive list, users
    // from user/count; each department costs at least one user/list page.
    std::int64_t depts = -1, users = -1;
    client.call_get(
        "/department/list", "id=" + root + "&fetch_child=true&lang=zh_CN",
        [&](std::string& body) -> std::optional<ApiFailure> {
            auto r = dingtalk::parse_legacy_department_list("/department/list", body);
            if (!r.ok()) return r.failure();
            depts = static_cast<std::int64_t>(r.value().size()) + 1;
            return std::nullopt;
        },
        [](const ApiFailure&) {});
    client.call(
        "/topapi/user/count", "{\"only_active\":false}",
        [&](std::string& body) -> std::optional<ApiFailure> {
            auto r = dingtalk::parse_user_count("/topapi/user/count", body);
            if (!r.ok()) return r.failure();
            users = r.value();
            return std::nullopt;
        },
        [](const ApiFailure&) {});
    (void)client.run();
    if (depts > 0 && users >= 0) {
        const std::int64_t gets = mapping.needs_department_get() ? depts : 1;
        const std::int64_t pages_min = depts, pages_max = depts + (users + 99) / 100;
        const std::int64_t user_gets = mapping.manager_source() == ManagerSource::dingtalk ? users : 0;
        const std::int64_t fixed = 3;  // gettoken, /department/list, listsub of the root
        out << "estimated DingTalk calls for a full sync: about " << fixed + gets + pages_max + user_gets << " ("
            << depts << " departments, " << users << " users: department/get " << gets << ", user/list " << pages_min
            << ".." << pages_max << " pages, user/get " << user_gets << ", plus 3)\n";
    } else {
        out << "estimated DingTalk calls: unknown (/department/list or /topapi/user/count did not answer)\n";
    }
}

}  // namespace

bool check_dingtalk(const AgentConfig& config, std::ostream& out, const Mapping* mapping);

bool check_online(const AgentConfig& config, std::ostream& out, const Mapping* mapping) {
    bool dingtalk_ok = check_dingtalk(config, out, mapping);
    // The target is checked even when DingTalk fails: the operator sees every problem at once.
    bool target_ok = config.target_type != "ldap" || check_ldap_online(config.ldap, out);
    if (config.target_type == "scim") target_ok = check_scim_online(config.scim, out);
    return dingtalk_ok && target_ok;
}

bool check_dingtalk(const AgentConfig& config, std::ostream& out, const Mapping* mapping) {
    const auto secrets = config.secrets();
    const bool via_proxy = !config.client.transport.proxy_url.empty();
    dingtalk::ClientSettings s = config.client;
    s.max_attempts = 2;
    s.backoff_base = std::chrono::milliseconds(100);
    dingtalk::DingTalkClient client(s);
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

    // Contact permissions: one call per API the sync uses (§2, §3 name their scopes).
    bool ok = true;
    struct Probe {
        const char* api;
        std::string body;
    };
    std::string root = std::to_string(config.root_department);
    const Probe probes[] = {
        {"/topapi/v2/department/listsub", "{\"dept_id\":" + root + "}"},
        {"/topapi/v2/department/get", "{\"dept_id\":" + root + "}"},
        {"/topapi/v2/user/list", "{\"dept_id\":" + root + ",\"cursor\":0,\"size\":1,\"contain_access_limit\":true}"},
    };
    std::vector<std::optional<ApiFailure>> results(std::size(probes));
    for (size_t i = 0; i < std::size(probes); ++i) {
        std::string api = probes[i].api;
        client.call(
            api, probes[i].body,
            [api](std::string& body) -> std::optional<ApiFailure> { return check_probe_answer(api, body); },
            [&results, i](const ApiFailure& f) { results[i] = f; });
    }
    if (auto f = client.run()) {
        report("contacts", *f);
        return false;
    }
    for (size_t i = 0; i < std::size(probes); ++i) {
        if (results[i]) {
            ok = false;
            report(probes[i].api, *results[i]);
        } else {
            out << probes[i].api << ": ok\n";
        }
    }
    if (ok && mapping) {
        estimate_full_sync(client, root, *mapping, out);
    }
    return ok;
}

}  // namespace dingbridge::agent
