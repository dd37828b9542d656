#include "agent/dingtalk/errors.h"

#include "shared/enum_table.h"

namespace dingbridge::agent::dingtalk {

constexpr auto kFailureKindNames = enum_table<FailureKind::api>(
    {"network", "proxy_refused", "tls", "http", "busy", "throttle", "token", "ip_not_allowed", "permission",
     "bad_credentials", "quota", "not_found", "malformed", "api"});

const char* failure_kind_name(FailureKind kind) { return kFailureKindNames.get(kind, "?"); }

bool ApiFailure::retryable() const {
    switch (kind) {
        case FailureKind::network:
        case FailureKind::busy:
        case FailureKind::throttle:
        // Truncated or garbled answers are nearly always transient (a cut connection, a gateway
        // hiccup): retried like 5xx, within max_attempts.
        case FailureKind::malformed:
            return true;
        case FailureKind::http_status:
            return http_status >= 500 || http_status == 429;
        default:
            return false;
    }
}

std::string ApiFailure::message() const {
    std::string m = api + ": ";
    if (kind == FailureKind::network) {
        m += "network error: " + detail;
    } else if (kind == FailureKind::proxy_refused) {
        m += "the proxy refused the tunnel with HTTP " + std::to_string(proxy_status);
        if (!detail.empty()) m += ": " + detail;
    } else if (kind == FailureKind::tls) {
        m += "TLS failure: " + detail;
    } else if (kind == FailureKind::malformed) {
        m += "malformed response: " + detail;
    } else if (kind == FailureKind::http_status && errcode == 0) {
        m += "HTTP " + std::to_string(http_status);
        if (!detail.empty()) m += ": " + detail;
    } else {
        m += "errcode " + std::to_string(errcode);
        if (!sub_code.empty()) m += " sub_code " + sub_code;
        m += ": " + errmsg;
        if (!detail.empty()) m += " (" + detail + ")";
    }
    m += " (request id " + (request_id.empty() ? std::string("none") : request_id) + ")";
    return m;
}

}  // namespace dingbridge::agent::dingtalk
