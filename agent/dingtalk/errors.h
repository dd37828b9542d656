#pragma once
// What went wrong with one DingTalk call, as a value (no exceptions inside the fetch loop).
// Every failure names the API path, DingTalk's errcode/sub_code/errmsg and the request id so that
// an operator can quote it to DingTalk support (dingtalk-api.md §4). Secrets never enter these
// strings: URLs (which carry the token) are never copied in.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace dingbridge::agent::dingtalk {

enum class FailureKind {
    network,          // curl error (connect refused, timeout, reset): retried
    proxy_refused,    // the proxy answered CONNECT with 407/403/...: fatal
    tls,              // certificate verification / CA bundle: fatal
    http_status,      // non-2xx HTTP without a DingTalk envelope (5xx retried)
    busy,             // errcode -1: retried with backoff
    throttle,         // 90018, 88+90018/90002, 9000x: retried after >= 1 s
    token,            // 40014/42001/40001/33001: refetch token, retry once
    ip_denied,        // 88+60020 / 60020: fatal, names the IP DingTalk saw
    permission,       // 88+60011: fatal, names the required scopes
    bad_credentials,  // 40096
    quota,            // 90020: the monthly API quota is used up: fatal until next month
    not_found,        // 60003 / 60121: the object vanished meanwhile
    malformed,        // unparseable or unexpected JSON (truncated, garbled): retried like 5xx
    api,              // any other errcode
};

const char* failure_kind_name(FailureKind kind);

struct ApiFailure {
    FailureKind kind = FailureKind::api;
    std::string api;  // path, e.g. /topapi/v2/user/list
    std::int64_t errcode = 0;
    std::string sub_code;
    std::string errmsg;
    std::string request_id;
    int http_status = 0;
    int proxy_status = 0;  // CONNECT answer when the proxy refused
    std::string detail;    // curl's message or the parser's, without URLs

    bool retryable() const;
    // DingTalk answered this code, as errcode or as sub_code under errcode 88.
    bool has_code(std::int64_t code) const { return errcode == code || sub_code == std::to_string(code); }
    // "/topapi/v2/user/list: errcode 88 sub_code 90018: <errmsg> (request id abc)"
    std::string message() const;
};

template <class T>
class Outcome {
public:
    Outcome(T value) : value_(std::move(value)) {}
    Outcome(ApiFailure failure) : failure_(std::move(failure)) {}
    bool ok() const { return value_.has_value(); }
    T& value() { return *value_; }
    const T& value() const { return *value_; }
    const ApiFailure& failure() const { return failure_; }

private:
    std::optional<T> value_;
    ApiFailure failure_;
};

}  // namespace dingbridge::agent::dingtalk
