#include "tests/sim/sim.h"

#include <algorithm>
#include <charconv>
#include <fstream>

#include "shared/dingtalk_crypto.h"

namespace sim {
namespace crypto = dingbridge::dingtalk_crypto;  // shared/dingtalk_crypto.h

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;
using Clock = std::chrono::steady_clock;

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {

// A 200 answer whose body is w's JSON.
ApiResponse json_ok(JsonWriter& w) {
    ApiResponse r;
    r.body = w.take();
    return r;
}

// Parses body as a JSON object into o (valid until parser's next parse); false if it is not one.
bool parse_object(simdjson::dom::parser& parser, std::string_view body, object& o) {
    element doc;
    return parser.parse(body).get(doc) == simdjson::SUCCESS && doc.get(o) == simdjson::SUCCESS;
}

int64_t mono_s() { return std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count(); }

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string url_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> parse_form(std::string_view s) {
    std::vector<std::pair<std::string, std::string>> items;
    while (!s.empty()) {
        auto amp = s.find('&');
        auto part = s.substr(0, amp);
        s = amp == std::string_view::npos ? std::string_view() : s.substr(amp + 1);
        if (part.empty()) continue;
        auto eq = part.find('=');
        if (eq == std::string_view::npos)
            items.emplace_back(url_decode(part), "");
        else
            items.emplace_back(url_decode(part.substr(0, eq)), url_decode(part.substr(eq + 1)));
    }
    return items;
}

bool is_loopback(std::string_view ip) {
    return ip.rfind("127.", 0) == 0 || ip == "::1" || ip.rfind("::ffff:127.", 0) == 0;
}

// Parameter readers for topapi bodies. Return false and set err when present but malformed.
enum class Param { absent, ok, bad };

// o[k] into e; false when k is absent or null (both mean "not given").
bool present(object o, std::string_view k, element& e) {
    return o.at_key(k).get(e) == simdjson::SUCCESS && e.type() != element_type::NULL_VALUE;
}

// A given parameter's value; false when it has the wrong type (a number or a boolean may also be
// given as a string).
bool read_param(element e, int64_t& out) {
    if (e.type() == element_type::INT64) {
        out = int64_t(e);
        return true;
    }
    if (e.type() == element_type::UINT64) {
        if (uint64_t(e) > uint64_t(INT64_MAX)) return false;
        out = static_cast<int64_t>(uint64_t(e));
        return true;
    }
    if (e.type() != element_type::STRING) return false;
    std::string_view s = std::string_view(e);
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool read_param(element e, std::string& out) {
    if (e.type() != element_type::STRING) return false;
    out = std::string(std::string_view(e));
    return true;
}

bool read_param(element e, bool& out) {
    if (e.type() == element_type::BOOL) {
        out = bool(e);
        return true;
    }
    if (e.type() != element_type::STRING) return false;
    std::string_view s = std::string_view(e);
    if (s != "true" && s != "false") return false;
    out = s == "true";
    return true;
}

template <class T>
Param param(object o, std::string_view k, T& out) {
    element e;
    if (!present(o, k, e)) return Param::absent;
    return read_param(e, out) ? Param::ok : Param::bad;
}

// The JSON object body of a v1.0 call and its two credential fields (`names`: the key's and the
// secret's; absent ones stay empty); false when there is no such body.
bool credentials_body(simdjson::dom::parser& parser, const ApiRequest& req, object& o,
                      std::pair<std::string_view, std::string_view> names, std::string& key, std::string& secret) {
    if (req.body.empty() || !parse_object(parser, req.body, o)) return false;
    (void)param(o, names.first, key);
    (void)param(o, names.second, secret);
    return true;
}

std::string api_name(std::string_view path) {
    // /topapi/v2/user/list -> dingtalk.oapi.v2.user.list (§4)
    std::string s = "dingtalk.oapi.";
    for (char c : path.substr(std::string_view("/topapi/").size())) s.push_back(c == '/' ? '.' : c);
    return s;
}

const char* kTopapiPaths[] = {
    "/topapi/v2/department/listsub",
    "/topapi/v2/department/listsubid",
    "/topapi/v2/department/get",
    "/topapi/v2/department/listparentbydept",
    "/topapi/v2/department/listparentbyuser",
    "/topapi/v2/user/list",
    "/topapi/v2/user/get",
    "/topapi/user/listid",
    "/topapi/user/count",
    "/topapi/user/listsimple",
};

}  // namespace

const std::string* Simulator::Query::get(std::string_view k) const {
    for (const auto& [key, v] : items)
        if (key == k) return &v;
    return nullptr;
}

Simulator::Simulator(SimOptions opts, std::unique_ptr<Org> org)
    : opts_(std::move(opts)), org_(std::move(org)), faults_(opts_.seed) {}

std::string Simulator::request_id() {
    // 13 base-36 characters like the probes' "16l4ew3d47pdp"; unique per process run.
    static const char k[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t v = (static_cast<uint64_t>(wall_ms()) << 16) ^ (++request_seq_ * 0x9E3779B97F4A7C15ULL);
    std::string s;
    for (int i = 0; i < 13; ++i) {
        s.push_back(k[v % 36]);
        v /= 36;
        if (v == 0) v = request_seq_ * 7919 + static_cast<uint64_t>(i);
    }
    return s;
}

ApiResponse Simulator::oapi_error(int errcode, std::string_view errmsg, bool topapi_style) {
    JsonWriter w;
    w.begin_object().kv("errcode", errcode).kv("errmsg", errmsg);
    if (topapi_style) w.kv("request_id", request_id());
    w.end_object();
    return json_ok(w);
}

ApiResponse Simulator::oapi_sub_error(std::string_view sub_code, std::string_view sub_msg) {
    JsonWriter w;
    std::string errmsg = "ding talk error[subcode=" + std::string(sub_code) + ",submsg=" + std::string(sub_msg) + "]";
    w.begin_object().kv("errcode", 88).kv("sub_code", sub_code).kv("sub_msg", sub_msg);
    w.kv("errmsg", errmsg).kv("request_id", request_id()).end_object();
    return json_ok(w);
}

// The per-source deny page (§4), not JSON DingTalk's clients understand.
ApiResponse Simulator::deny_page() {
    ApiResponse r;
    r.body = "{\"status\":1111,\"wait\":5,\"source\":\"x5\",\"punish\":\"deny\",\"uuid\":\"" + request_id() + "\"}";
    return r;
}

ApiResponse Simulator::api_error(int status, std::string_view code, std::string_view message) {
    ApiResponse r;
    r.status = status;
    std::string rid = request_id();
    JsonWriter w;
    w.begin_object().kv("requestid", rid).kv("code", code).kv("message", message).end_object();
    r.body = w.take();
    r.headers.emplace_back("x-acs-request-id", rid);
    r.headers.emplace_back("x-acs-trace-id", "trace" + rid);
    return r;
}

ApiResponse Simulator::throttle_response(bool api_host, std::string_view api) {
    if (api_host)
        return api_error(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
                         "应用调用该接口的QPS超过限制 (" + std::string(api) + ")");
    std::string msg = "app qps limit, apiPath(" +
                      (std::string(api).rfind("/topapi/", 0) == 0 ? api_name(api) : std::string(api)) +
                      "), 应用调用该接口的QPS超过限制 " + std::to_string(opts_.qps) + "/s";
    return oapi_sub_error(opts_.throttle_code, msg);
}

std::string Simulator::issue_token() {
    auto now = Clock::now();
    if (!token_ || token_->expires <= now) token_ = Token{crypto::random_alnum(32), now};
    token_->expires = now + std::chrono::seconds(opts_.token_ttl_s);  // repeat fetch extends (§1)
    return token_->value;
}

bool Simulator::token_valid(std::string_view t) const {
    return token_ && !t.empty() && token_->value == t && token_->expires > Clock::now();
}

bool Simulator::allowed_source(std::string_view ip) {
    if (!source_in_list(ip)) {
        ++denied_ip_;
        return false;
    }
    return true;
}

bool Simulator::source_in_list(std::string_view ip) const {
    if (opts_.allow_sources.empty()) return true;
    std::string_view v4 = ip;
    if (v4.rfind("::ffff:", 0) == 0) v4.remove_prefix(7);
    for (const auto& a : opts_.allow_sources)
        if (a == ip || a == v4) return true;
    return false;
}

void Simulator::note_call(const std::string& api) {
    int64_t sec = mono_s();
    ++total_calls_;
    if (global_second_ != sec) {
        global_second_ = sec;
        global_in_second_ = 0;
    }
    global_peak_qps_ = std::max(global_peak_qps_, ++global_in_second_);
    auto& s = api_stats_[api];
    ++s.calls;
    if (s.second != sec) {
        s.second = sec;
        s.in_second = 0;
        s.admitted_in_second = 0;
    }
    s.peak_qps = std::max(s.peak_qps, ++s.in_second);
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
    if (s.calls == 1) s.first_ms = ms;
    s.last_ms = ms;
}

bool Simulator::count_and_throttle(const std::string& api) {
    auto& s = api_stats_[api];
    if (s.second != mono_s()) {  // note_call ran for this request, so this is only defensive
        s.second = mono_s();
        s.in_second = 1;
        s.admitted_in_second = 0;
    }
    // Only admitted calls use up the second's budget, so a client that backs off recovers.
    if (opts_.qps > 0 && s.admitted_in_second >= static_cast<uint64_t>(opts_.qps)) {
        ++s.throttled;
        ++total_throttled_;
        return true;
    }
    ++s.admitted_in_second;
    return false;
}

std::optional<StreamTicket> Simulator::consume_ticket(std::string_view ticket) {
    auto it = tickets_.find(std::string(ticket));
    if (it == tickets_.end()) return std::nullopt;
    StreamTicket t = std::move(it->second);
    tickets_.erase(it);  // single-use
    if (Clock::now() - t.issued > std::chrono::seconds(90)) return std::nullopt;
    return t;
}

// ------------------------------------------------------------------------------------------

ApiResponse Simulator::handle(const ApiRequest& req) {
    std::string_view target = req.target;
    auto qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    Query q;
    if (qpos != std::string_view::npos) q.items = parse_form(target.substr(qpos + 1));
    if (path.rfind("/_sim/", 0) == 0) {
        ++admin_calls_;
        return handle_admin(req, path, q);
    }

    // Per-source window (§4): over the limit, the source is banned and gets the deny page.
    if (opts_.source_limit > 0) {
        int64_t now = mono_s();
        auto& w = sources_[req.source_ip];
        ++w.calls;
        if (w.banned_until > now) {
            ++denied_source_limit_;
            return deny_page();
        }
        if (now - w.window_start >= opts_.source_window_s) {
            w.window_start = now;
            w.count = 0;
        }
        if (++w.count > opts_.source_limit) {
            w.banned_until = now + opts_.source_ban_s;
            ++denied_source_limit_;
            return deny_page();
        }
    }

    const bool api_host = path.rfind("/v1.0/", 0) == 0;
    auto fault = faults_.pick(path);
    if (fault) {
        ++faults_fired_;
        ApiResponse r;
        switch (fault->kind) {
            case FaultKind::drop:
                r.drop = true;
                return r;
            case FaultKind::http_status:
                r.status = fault->status;
                r.content_type = "text/html";
                r.body = "<html><body><h1>" + std::to_string(fault->status) + " (simulated fault)</h1></body></html>";
                r.delay_ms = fault->delay_ms;
                return r;
            case FaultKind::busy:
                // topapi answers carry a request_id, errors included (dingtalk-api.md §4).
                r = api_host ? api_error(503, "ServiceUnavailable", "系统繁忙")
                             : oapi_error(-1, "系统繁忙", path.rfind("/topapi/", 0) == 0);
                r.delay_ms = fault->delay_ms;
                return r;
            case FaultKind::throttle:
                r = throttle_response(api_host, path);
                r.delay_ms = fault->delay_ms;
                return r;
            case FaultKind::token_invalid:
                r = api_host ? api_error(400, "InvalidAuthentication", "不合法的access_token")
                             : oapi_sub_error("40014", "不合法的access_token");
                r.delay_ms = fault->delay_ms;
                return r;
            case FaultKind::quota:  // the org's monthly call quota is used up (§4: 90020)
                r = api_host
                        ? api_error(403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "调用量:10001次,额度:10000次")
                        : oapi_error(90020, "调用量:10001次,额度:10000次");
                r.delay_ms = fault->delay_ms;
                return r;
            case FaultKind::errcode:  // a business error (§4's table), e.g. 50004 or 33012
                r = api_host
                        ? api_error(400, std::to_string(fault->errcode), fault->errmsg)
                        : oapi_error(static_cast<int>(fault->errcode), fault->errmsg, path.rfind("/topapi/", 0) == 0);
                r.delay_ms = fault->delay_ms;
                return r;
            default:
                break;
        }
    }
    ApiResponse r = dingtalk(req, path, q);
    if (fault) {
        r.delay_ms = fault->delay_ms;
        if (fault->kind == FaultKind::malformed) {
            r.body = "{\"errcode\":0,\"errmsg\":\"ok\",\"result\":{\"list\":[{\"userid\":<html>oops";
        } else if (fault->kind == FaultKind::truncated) {
            r.body.resize(r.body.size() / 2);
        }
    }
    return r;
}

ApiResponse Simulator::dingtalk(const ApiRequest& req, std::string_view path, const Query& q) {
    bool known = path == "/gettoken" || path == "/department/list" || path == "/v1.0/oauth2/accessToken" ||
                 path == "/v1.0/gateway/connections/open" || path == "/v1.0/contact/empLeaveRecords";
    for (const char* p : kTopapiPaths) known |= path == p;
    note_call(known ? std::string(path) : std::string("(unknown)"));
    if (path == "/gettoken") {
        if (req.method != "GET") return oapi_error(404, "请求的URI地址不存在");
        return get_token(req, q);
    }
    if (path.rfind("/topapi/", 0) == 0) return topapi(req, path, q);
    if (path == "/department/list") return legacy_department_list(req, q);
    if (path.rfind("/v1.0/", 0) == 0) {
        if (path == "/v1.0/oauth2/accessToken" && req.method == "POST") return new_access_token(req);
        if (path == "/v1.0/gateway/connections/open" && req.method == "POST") return open_connection(req);
        if (path == "/v1.0/contact/empLeaveRecords" && req.method == "GET") {
            // Token on the api host travels only in x-acs-dingtalk-access-token (§1).
            if (req.acs_token.empty())
                return api_error(400, "AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token");
            if (!token_valid(req.acs_token)) return api_error(400, "InvalidAuthentication", "不合法的access_token");
            if (!allowed_source(req.source_ip))
                return api_error(403, "Forbidden.AccessDenied.IpNotInWhiteList",
                                 "访问ip不在白名单之中,request ip=" + req.source_ip + " appKey(" + opts_.app_key + ")");
            if (count_and_throttle(std::string(path))) return throttle_response(true, path);
            return emp_leave_records(q);
        }
        return api_error(404, "InvalidAction.NotFound",
                         "Specified api is not found, please check your url and method.");
    }
    return oapi_error(404, "请求的URI地址不存在");
}

ApiResponse Simulator::get_token(const ApiRequest& req, const Query& q) {
    const std::string* key = q.get("appkey");
    const std::string* secret = q.get("appsecret");
    if (!key) {
        key = q.get("corpid");
        secret = q.get("corpsecret");
    }
    if (!key || key->empty()) return oapi_error(40035, "缺少参数 corpid or appkey");
    if (!allowed_source(req.source_ip))
        return oapi_error(60020, "访问ip不在白名单之中,request ip=" + req.source_ip + " appKey(" + *key + ")");
    bool key_ok = *key == opts_.app_key || *key == opts_.corp_id;
    if (!key_ok || !secret || *secret != opts_.app_secret) return oapi_error(40096, "不合法的appKey或appSecret");
    if (count_and_throttle("/gettoken")) return throttle_response(false, "/gettoken");
    std::string t = issue_token();
    JsonWriter w;
    const int64_t left = token_seconds_left();
    w.begin_object().kv("errcode", 0).kv("access_token", t).kv("errmsg", "ok").kv("expires_in", left);
    w.end_object();
    return json_ok(w);
}

int64_t Simulator::token_seconds_left() const {
    return std::chrono::duration_cast<std::chrono::seconds>(token_->expires - Clock::now()).count();
}

ApiResponse Simulator::new_access_token(const ApiRequest& req) {
    object o;
    std::string key, secret;
    if (!credentials_body(parser_, req, o, {"appKey", "appSecret"}, key, secret))
        return api_error(400, "MissingBody", "body is mandatory");
    if (!allowed_source(req.source_ip))
        return api_error(403, "Forbidden.AccessDenied.IpNotInWhiteList",
                         "访问ip不在白名单之中,request ip=" + req.source_ip + " appKey(" + key + ")");
    if (key != opts_.app_key || secret != opts_.app_secret)
        return api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret");
    if (count_and_throttle("/v1.0/oauth2/accessToken")) return throttle_response(true, "/v1.0/oauth2/accessToken");
    std::string t = issue_token();
    const int64_t left = token_seconds_left();
    JsonWriter w;
    w.begin_object().kv("accessToken", t).kv("expireIn", left).end_object();
    return json_ok(w);
}

ApiResponse Simulator::open_connection(const ApiRequest& req) {
    object o;
    std::string id, secret;
    if (!credentials_body(parser_, req, o, {"clientId", "clientSecret"}, id, secret))
        return api_error(400, "MissingBody", "body is mandatory");
    if (id != opts_.app_key || secret != opts_.app_secret) return api_error(401, "authFailed", "鉴权失败");
    StreamTicket t;
    t.issued = Clock::now();
    element subs;
    if (o.at_key("subscriptions").get(subs) == simdjson::SUCCESS && subs.type() == element_type::ARRAY) {
        for (element s : simdjson::dom::array(subs)) {
            if (s.type() != element_type::OBJECT) continue;
            std::string type, topic;
            (void)param(s, "type", type);
            (void)param(s, "topic", topic);
            t.subscriptions.emplace_back(type, topic);
        }
    }
    // Expired tickets are swept here so the map cannot grow without bound.
    for (auto it = tickets_.begin(); it != tickets_.end();)
        it = Clock::now() - it->second.issued > std::chrono::seconds(90) ? tickets_.erase(it) : std::next(it);
    std::string ticket = crypto::random_alnum(32);
    tickets_.emplace(ticket, std::move(t));
    JsonWriter w;
    std::string host = req.host.empty() ? std::string("127.0.0.1") : req.host;
    if (!opts_.stream_endpoint_host.empty()) {
        // Keep the port the client reached us on; replace the host name (§6: the real endpoint
        // host differs from the api host, and the proxy must allow it).
        auto colon = host.rfind(':');
        std::string port =
            colon != std::string::npos && host.find(']', colon) == std::string::npos ? host.substr(colon) : "";
        host = opts_.stream_endpoint_host + port;
    }
    w.begin_object().kv("endpoint", "wss://" + host + "/connect");
    w.kv("ticket", ticket).end_object();
    return json_ok(w);
}

ApiResponse Simulator::emp_leave_records(const Query& q) {
    const std::string* start = q.get("startTime");
    if (!start) return api_error(400, "MissingstartTime", "startTime is mandatory for this action.");
    auto from = parse_iso8601_ms(*start);
    if (!from) return api_error(400, "InvalidParameter.startTime", "startTime must be ISO-8601");
    int64_t to = INT64_MAX;
    if (const auto* e = q.get("endTime"); e && !e->empty()) {
        auto v = parse_iso8601_ms(*e);
        if (!v) return api_error(400, "InvalidParameter.endTime", "endTime must be ISO-8601");
        to = *v;
    }
    int64_t offset = 0, max = opts_.emp_leave_max_results;
    if (const auto* t = q.get("nextToken"); t && !t->empty()) {
        auto r = std::from_chars(t->data(), t->data() + t->size(), offset);
        if (r.ec != std::errc() || offset < 0) return api_error(400, "InvalidParameter.nextToken", "invalid nextToken");
    }
    if (const auto* m = q.get("maxResults")) {
        auto r = std::from_chars(m->data(), m->data() + m->size(), max);
        if (r.ec != std::errc() || max < 1 || max > opts_.emp_leave_max_results)
            return api_error(400, "InvalidParameter.maxResults",
                             "maxResults must be 1.." + std::to_string(opts_.emp_leave_max_results));
    }
    std::vector<const LeaveRecord*> hits;
    for (const auto& r : org_->leave_records())
        if (r.leave_time_ms >= *from && r.leave_time_ms <= to) hits.push_back(&r);
    JsonWriter w;
    w.begin_object().key("records").begin_array();
    size_t end = std::min(hits.size(), static_cast<size_t>(offset + max));
    for (size_t i = static_cast<size_t>(std::min<int64_t>(offset, static_cast<int64_t>(hits.size()))); i < end; ++i) {
        const auto& r = *hits[i];
        w.begin_object().kv("userId", r.user_id).kv("name", r.name);
        w.kv_opt("stateCode", r.state_code).kv_opt("mobile", r.mobile);
        w.kv("leaveTime", format_iso8601(r.leave_time_ms)).kv("leaveReason", r.leave_reason).end_object();
    }
    w.end_array();
    if (end < hits.size()) w.kv("nextToken", std::to_string(end));  // absent on the last page (§9)
    w.end_object();
    return json_ok(w);
}

// Legacy recursive list used by go-ldap-admin (§2): GET, plain errcodes, different key names.
ApiResponse Simulator::legacy_department_list(const ApiRequest& req, const Query& q) {
    const std::string* token = q.get("access_token");
    if (!token || !token_valid(*token)) return oapi_error(40014, "不合法的access_token");
    if (!allowed_source(req.source_ip))
        return oapi_error(60020, "访问ip不在白名单之中,request ip=" + req.source_ip + " appKey(" + opts_.app_key + ")");
    if (count_and_throttle("/department/list"))
        return oapi_error(opts_.throttle_code == "90002" ? 90002 : 90018, "app qps limit, apiPath(/department/list)");
    int64_t id = 1;
    if (const auto* v = q.get("id"); v && !v->empty()) {
        auto r = std::from_chars(v->data(), v->data() + v->size(), id);
        if (r.ec != std::errc() || r.ptr != v->data() + v->size()) return oapi_error(40035, "不合法的参数 id");
    }
    const auto* fc = q.get("fetch_child");
    const bool recursive = fc && *fc == "true";
    const Department* root = org_->dept(id);
    if (!root) return oapi_error(60003, "部门不存在或已删除");
    JsonWriter w;
    w.begin_object().kv("errcode", 0).kv("errmsg", "ok").key("department").begin_array();
    std::vector<int64_t> queue(root->children_.begin(), root->children_.end());
    for (size_t i = 0; i < queue.size(); ++i) {
        const Department* d = org_->dept(queue[i]);
        if (!d) continue;
        w.begin_object().kv("id", d->dept_id).kv("name", d->name).kv("parentid", d->parent_id);
        w.kv("createDeptGroup", d->create_dept_group).kv("autoAddUser", d->auto_add_user).end_object();
        if (recursive) queue.insert(queue.end(), d->children_.begin(), d->children_.end());
    }
    w.end_array().end_object();
    return json_ok(w);
}

ApiResponse Simulator::ok_result(JsonWriter& w) {
    w.kv("request_id", request_id()).end_object();
    return json_ok(w);
}

ApiResponse Simulator::topapi(const ApiRequest& req, std::string_view path, const Query& q) {
    bool known = false;
    for (const char* p : kTopapiPaths) known |= path == p;
    if (!known) {
        std::string sub = "不合法ApiName，ApiName = " + api_name(path);
        JsonWriter w;
        w.begin_object().kv("errcode", 22).kv("sub_msg", sub).kv("errmsg", "Invalid method[submsg=" + sub + "]");
        w.kv("request_id", request_id()).end_object();
        return json_ok(w);
    }
    if (req.method != "POST") return oapi_error(43002, "需要POST请求", true);

    // Parameters: a JSON body, or a form body (which may also carry access_token, §1).
    std::string json_body;
    std::vector<std::pair<std::string, std::string>> form;
    std::string_view body = req.body;
    while (!body.empty() &&
           (body.front() == ' ' || body.front() == '\n' || body.front() == '\r' || body.front() == '\t'))
        body.remove_prefix(1);
    if (body.empty()) {
        json_body = "{}";
    } else if (body.front() == '{') {
        json_body = std::string(body);
    } else {
        form = parse_form(body);
        JsonWriter w;
        w.begin_object();
        for (const auto& [k, v] : form) w.kv(k, v);
        w.end_object();
        json_body = w.take();
    }
    std::string token;
    if (const auto* t = q.get("access_token")) token = *t;
    for (const auto& [k, v] : form)
        if (k == "access_token" && token.empty()) token = v;
    if (token.empty()) return oapi_sub_error("40000", "access_token is blank");
    if (!token_valid(token)) {
        if (opts_.plain_token_errors) return oapi_error(40014, "不合法的access_token", true);
        return oapi_sub_error("40014", "不合法的access_token");
    }
    if (!allowed_source(req.source_ip))
        return oapi_sub_error("60020",
                              "访问ip不在白名单之中,request ip=" + req.source_ip + " appKey(" + opts_.app_key + ")");
    std::string api(path);
    if (count_and_throttle(api)) return throttle_response(false, path);

    object o;
    if (!parse_object(parser_, json_body, o)) return oapi_error(40035, "不合法的参数: 请求体不是JSON对象", true);

    auto missing = [&](std::string_view n) { return oapi_error(40035, "缺少参数 " + std::string(n), true); };
    auto invalid = [&](std::string_view n) { return oapi_error(40035, "不合法的参数 " + std::string(n), true); };
    auto begin_ok = [](JsonWriter& w) { w.begin_object().kv("errcode", 0).kv("errmsg", "ok").key("result"); };
    const Org& org = *org_;
    // The department of the required dept_id, or the answer to give (missing, invalid, 60003).
    auto required_dept = [&](const Department*& d) -> std::optional<ApiResponse> {
        int64_t id = 0;
        auto p = param(o, "dept_id", id);
        if (p == Param::absent) return missing("dept_id");
        if (p == Param::bad) return invalid("dept_id");
        d = org.dept(id);
        if (!d) return oapi_error(60003, "部门不存在或已删除", true);
        return std::nullopt;
    };

    if (path == "/topapi/v2/department/listsub" || path == "/topapi/v2/department/listsubid") {
        int64_t id = 1;
        if (param(o, "dept_id", id) == Param::bad) return invalid("dept_id");
        const Department* d = org.dept(id);
        if (!d) return oapi_error(60003, "部门不存在或已删除", true);
        JsonWriter w;
        begin_ok(w);
        bool ids = path == "/topapi/v2/department/listsubid";
        if (ids) w.begin_object().key("dept_id_list");
        w.begin_array();
        for (int64_t c : d->children_) {
            const Department* cd = org.dept(c);
            if (!cd || (opts_.listsub_hide_hidden && cd->hide_dept)) continue;
            if (ids)
                w.value(c);
            else
                org.write_listsub_item(w, *cd);
        }
        w.end_array();
        if (ids) w.end_object();
        return ok_result(w);
    }
    if (path == "/topapi/v2/department/get" || path == "/topapi/v2/department/listparentbydept") {
        const Department* d = nullptr;
        if (auto error = required_dept(d)) return *error;
        JsonWriter w;
        begin_ok(w);
        if (path == "/topapi/v2/department/get") {
            org.write_dept_get(w, *d);
        } else {
            w.begin_object().kv_list("parent_id_list", org.parent_chain(d->dept_id)).end_object();
        }
        return ok_result(w);
    }
    if (path == "/topapi/v2/department/listparentbyuser" || path == "/topapi/v2/user/get") {
        std::string uid;
        auto p = param(o, "userid", uid);
        if (p == Param::absent || uid.empty()) return missing("userid");
        if (p == Param::bad) return invalid("userid");
        const User* u = org.user(uid);
        if (!u) return oapi_error(60121, "找不到该用户", true);
        JsonWriter w;
        begin_ok(w);
        if (path == "/topapi/v2/user/get") {
            org.write_user_get(w, *u);
        } else {
            w.begin_object().key("parent_list").begin_array();
            for (const auto& ud : u->depts)
                w.begin_object().kv_list("parent_dept_id_list", org.parent_chain(ud.dept_id)).end_object();
            w.end_array().end_object();
        }
        return ok_result(w);
    }
    if (path == "/topapi/user/listid") {
        const Department* d = nullptr;
        if (auto error = required_dept(d)) return *error;
        JsonWriter w;
        begin_ok(w);
        w.begin_object().key("userid_list").begin_array();
        for (const User* u : org.members(*d, OrderField::custom, true)) w.value(u->userid);
        w.end_array().end_object();
        return ok_result(w);
    }
    if (path == "/topapi/user/count") {
        bool only_active = false;
        if (param(o, "only_active", only_active) == Param::bad) return invalid("only_active");
        JsonWriter w;
        begin_ok(w);
        w.begin_object().kv("count", static_cast<int64_t>(org.user_count(only_active))).end_object();
        return ok_result(w);
    }
    // v2/user/list and user/listsimple: paged direct members (§3).
    int64_t dept_id = 0, cursor = 0, size = 0;
    auto p = param(o, "dept_id", dept_id);
    if (p == Param::absent) return missing("dept_id");
    if (p == Param::bad || dept_id < 1) return invalid("dept_id");
    p = param(o, "cursor", cursor);
    if (p == Param::absent) return missing("cursor");
    if (p == Param::bad || cursor < 0) return invalid("cursor");
    p = param(o, "size", size);
    if (p == Param::absent) return missing("size");
    if (p == Param::bad || size < 1 || size > 100) return invalid("size");
    std::string of = "custom";
    if (param(o, "order_field", of) == Param::bad) return invalid("order_field");
    auto order = parse_order_field(of);
    if (!order) return invalid("order_field");
    bool limited = false;
    if (param(o, "contain_access_limit", limited) == Param::bad) return invalid("contain_access_limit");
    const Department* d = org.dept(dept_id);
    if (!d) return oapi_error(60003, "部门不存在或已删除", true);
    const auto& members = org.members(*d, *order, limited);
    size_t from = static_cast<size_t>(std::min<int64_t>(cursor, static_cast<int64_t>(members.size())));
    size_t to = std::min(members.size(), from + static_cast<size_t>(size));
    bool simple = path == "/topapi/user/listsimple";
    JsonWriter w;
    begin_ok(w);
    w.begin_object().kv("has_more", to < members.size());
    if (to < members.size()) w.kv("next_cursor", static_cast<int64_t>(to));
    w.key("list").begin_array();
    for (size_t i = from; i < to; ++i) {
        if (simple)
            w.begin_object().kv("userid", members[i]->userid).kv("name", members[i]->name).end_object();
        else
            org.write_user_list_item(w, *members[i], dept_id);
    }
    w.end_array().end_object();
    return ok_result(w);
}

// ---- /_sim admin ----

ApiResponse Simulator::handle_admin(const ApiRequest& req, std::string_view path, const Query&) {
    auto reply = [](int status, std::string body) {
        ApiResponse r;
        r.status = status;
        r.body = std::move(body);
        return r;
    };
    auto fail = [&](int status, std::string_view why) {
        JsonWriter w;
        w.begin_object().kv("ok", false).kv("error", why).end_object();
        return reply(status, w.take());
    };
    if (!is_loopback(req.source_ip)) return fail(403, "admin endpoints answer loopback sources only");
    if (!opts_.admin_token.empty() && req.admin_token != opts_.admin_token)
        return fail(403, "missing or wrong x-sim-admin-token");

    const bool get = req.method == "GET";
    const bool post = req.method == "POST";
    if (get && path == "/_sim/health") return reply(200, "{\"ok\":true}");
    if (get && path == "/_sim/org") return reply(200, org_->dump());
    if (get && path == "/_sim/stats") {
        JsonWriter w;
        w.begin_object().kv("total_calls", total_calls_).kv("throttled", total_throttled_);
        w.kv("peak_qps", global_peak_qps_).kv("denied_ip", denied_ip_);
        w.kv("denied_source_limit", denied_source_limit_).kv("faults_fired", faults_fired_);
        w.kv("admin_calls", admin_calls_).kv("qps_limit", static_cast<int64_t>(opts_.qps));
        w.key("apis").begin_object();
        for (const auto& [name, s] : api_stats_) {
            w.key(name).begin_object().kv("calls", s.calls).kv("throttled", s.throttled);
            // Calls per second between the first and the latest call: the achieved rate while the
            // client was using this API (calls / wall time also counts its other phases).
            w.kv("peak_qps", s.peak_qps).kv("active_ms", s.last_ms - s.first_ms).end_object();
        }
        w.end_object();
        w.key("sources").begin_object();
        for (const auto& [ip, s] : sources_) w.key(ip).begin_object().kv("calls", s.calls).end_object();
        w.end_object();
        w.kv("users", static_cast<int64_t>(org_->user_count(false)));
        w.kv("departments", static_cast<int64_t>(org_->dept_count()));
        w.end_object();
        return reply(200, w.take());
    }
    if (post && path == "/_sim/stats/reset") {
        api_stats_.clear();
        sources_.clear();
        total_calls_ = total_throttled_ = denied_ip_ = denied_source_limit_ = faults_fired_ = 0;
        global_peak_qps_ = global_in_second_ = 0;
        return reply(200, "{\"ok\":true}");
    }
    if (post && path == "/_sim/tokens/expire") {
        token_.reset();
        return reply(200, "{\"ok\":true}");
    }
    if (get && path == "/_sim/faults") {
        JsonWriter w;
        faults_.write(w);
        return reply(200, w.take());
    }
    if (req.method == "DELETE" && path == "/_sim/faults") {
        faults_.clear();
        return reply(200, "{\"ok\":true}");
    }
    if (get && path == "/_sim/events") {
        JsonWriter w;
        if (sink_)
            sink_->write_status(w);
        else
            w.begin_object().end_object();
        return reply(200, w.take());
    }
    if (post && path == "/_sim/stream/cut") {
        if (sink_) sink_->cut_connections();
        return reply(200, "{\"ok\":true}");
    }
    if (post && path == "/_sim/stream/disconnect") {
        if (sink_) sink_->force_disconnect("simulated disconnect");
        return reply(200, "{\"ok\":true}");
    }

    if (!post) return fail(404, "unknown admin endpoint (see tests/sim/README.md)");
    element doc;
    if (parser_.parse(req.body.empty() ? std::string("{}") : req.body).get(doc) != simdjson::SUCCESS)
        return fail(400, "body must be JSON");
    if (path == "/_sim/stream/events") {
        // {"drop": N, "delay_ms": D}: the next N events are lost; new events wait D ms.
        int64_t drop = 0, delay = 0;
        if (doc.type() != element_type::OBJECT) return fail(400, "body must be a JSON object");
        if (auto v = doc.at_key("drop"); v.error() == simdjson::SUCCESS && v.get_int64().get(drop) != simdjson::SUCCESS)
            return fail(400, "drop must be an integer");
        if (auto v = doc.at_key("delay_ms");
            v.error() == simdjson::SUCCESS && v.get_int64().get(delay) != simdjson::SUCCESS)
            return fail(400, "delay_ms must be an integer");
        if (drop < 0 || drop > 1000000 || delay < 0 || delay > 3600000)
            return fail(400, "drop or delay_ms out of range");
        if (sink_) sink_->set_event_faults(static_cast<int>(drop), static_cast<int>(delay));
        return reply(200, "{\"ok\":true}");
    }
    if (path == "/_sim/faults") {
        std::string error;
        std::vector<uint64_t> ids;
        if (!faults_.add(doc, error, ids)) return fail(400, error);
        JsonWriter w;
        w.begin_object().kv("ok", true).key("ids").begin_array();
        for (auto id : ids) w.value(id);
        w.end_array().end_object();
        return reply(200, w.take());
    }
    object o;
    if (doc.get(o) != simdjson::SUCCESS) return fail(400, "body must be a JSON object");
    if (path == "/_sim/dump") {
        std::string file;
        if (param(o, "path", file) != Param::ok || file.empty()) return fail(400, "needs \"path\"");
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << org_->dump();
        if (!out.good()) return fail(500, "cannot write " + file);
        return reply(200, "{\"ok\":true}");
    }
    std::vector<OrgEvent> events;
    Status s;
    int64_t created = 0;
    if (path == "/_sim/dept/create") {
        s = org_->create_dept(o, events, &created);
    } else if (path == "/_sim/dept/update") {
        s = org_->update_dept(o, events);
    } else if (path == "/_sim/dept/remove") {
        int64_t id = 0;
        if (param(o, "dept_id", id) != Param::ok) return fail(400, "needs \"dept_id\"");
        s = org_->remove_dept(id, events);
    } else if (path == "/_sim/user/create") {
        s = org_->create_user(o, events);
    } else if (path == "/_sim/user/update") {
        s = org_->update_user(o, events);
    } else if (path == "/_sim/user/remove") {
        std::string id, reason = "leave";
        if (param(o, "userid", id) != Param::ok) return fail(400, "needs \"userid\"");
        (void)param(o, "reason", reason);
        s = org_->remove_user(id, reason, wall_ms(), events);
    } else {
        return fail(404, "unknown admin endpoint (see tests/sim/README.md)");
    }
    if (!s.ok()) return fail(400, s.error);
    JsonWriter w;
    w.begin_object().kv("ok", true);
    if (created) w.kv("dept_id", created);
    w.key("events").begin_array();
    for (const auto& e : events) {
        w.value(e.event_type);
        if (sink_) sink_->publish(e);
    }
    w.end_array().end_object();
    return reply(200, w.take());
}

}  // namespace sim
