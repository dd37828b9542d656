#include "agent/dingtalk/explain.h"

#include "agent/dingtalk/parse.h"

namespace dingbridge::agent::dingtalk {

std::string explain_failure(const ApiFailure& f, bool via_proxy) {
    std::string m = f.message();
    switch (f.kind) {
        case FailureKind::ip_denied: {
            std::string ip = ip_from_allowlist_message(f.errmsg);
            m += ". DingTalk refused the call because the source address " +
                 (ip.empty() ? std::string("(not given)") : ip) +
                 " is not on the app's server egress IP allow-list (服务器出口IP). ";
            m += !via_proxy ? "Set proxy.url so that the agent calls DingTalk through dingbridge-proxy, whose egress "
                              "IP is allow-listed."
                            : "Add " + (ip.empty() ? std::string("the proxy's egress IP") : ip) +
                                  " to the allow-list, or check the proxy's outgoing.bind_address.";
            break;
        }
        case FailureKind::bad_credentials:
            m += ". Check dingtalk.app_key and dingtalk.app_secret (the app's AppKey/AppSecret in the developer "
                 "console).";
            break;
        case FailureKind::permission: {
            std::string scopes = scopes_from_permission_message(f.errmsg);
            m += ". The app lacks a contact permission" +
                 (scopes.empty() ? std::string() : " (required: " + scopes + ")") +
                 "; grant it in the developer console (权限管理) and retry.";
            break;
        }
        case FailureKind::quota:
            m += ". The organization's monthly DingTalk API quota is used up; calls work again next month (or "
                 "after an edition upgrade).";
            break;
        case FailureKind::proxy_refused:
            if (f.proxy_status == 407)
                m += ". The proxy refused the credentials: check proxy.username and proxy.password.";
            else if (f.proxy_status == 403)
                m += ". The proxy refused this destination or source: allow the DingTalk hosts for this tenant in the "
                     "proxy's "
                     "destinations (and allow_internal_networks for a local simulator).";
            else
                m += ". The proxy could not open the tunnel (" + std::to_string(f.proxy_status) +
                     "): see the proxy's access log.";
            break;
        case FailureKind::tls:
            m += ". The TLS certificate was not trusted: check dingtalk.ca_file (and proxy.ca_file for an https:// "
                 "proxy).";
            break;
        case FailureKind::network:
            m += !via_proxy ? ". DingTalk is unreachable."
                            : ". Check that the proxy at proxy.url is running and reachable.";
            break;
        default:
            break;
    }
    return m;
}

}  // namespace dingbridge::agent::dingtalk
