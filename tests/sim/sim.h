#pragma once
// Simulator: the DingTalk behaviour, with no sockets. The server turns each HTTP request into an
// ApiRequest, calls handle(), and writes the ApiResponse back (or delays / drops it when a fault
// says so). Simulator owns the org, the token store, the rate limiters, the statistics and the
// fault table; it reports org mutations to an EventSink (the stream gateway + HTTP push, see
// events.h). All calls come from the single event-loop thread.
//
// Envelopes follow dingtalk-api.md §4: oapi paths always answer HTTP 200 with errcode (88 +
// sub_code for gateway errors); /v1.0 paths answer 4xx with {code,message,requestid}.

#include <simdjson.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tests/sim/faults.h"
#include "tests/sim/org.h"

namespace sim {

struct SimOptions {
    std::string app_key = "dingsimappkey";
    std::string app_secret = "simappsecret";
    std::string corp_id = "dingsimcorp";
    std::string app_id = "sim-app-0001";  // stream headers' appId / eventUnifiedAppId
    int64_t token_ttl_s = 7200;
    std::vector<std::string> allow_sources;  // empty = allow every source
    int qps = 20;                            // per app per API; 0 = unlimited
    std::string throttle_code = "90018";     // sub_code used for QPS overflow (90018 or 90002)
    int64_t source_limit = 10000;            // calls per source per window; 0 = unlimited
    int64_t source_window_s = 20;
    int64_t source_ban_s = 300;
    std::string admin_token;           // empty: /_sim is open to loopback sources only
    bool plain_token_errors = false;   // §9: bare 40014 instead of 88/sub_code 40014 on topapi
    bool listsub_hide_hidden = false;  // §9: whether listsub omits hide_dept departments
    int emp_leave_max_results = 50;
    uint64_t seed = 1;
    // Host put in the connections/open endpoint (real DingTalk: wss-open-connection.dingtalk.com);
    // empty = the request's Host header. The port is the one the request came to.
    std::string stream_endpoint_host;
};

struct ApiRequest {
    std::string method;
    std::string target;  // path + query as received
    std::string body;
    std::string source_ip;
    std::string host;           // Host header (used to build the stream endpoint)
    std::string acs_token;      // x-acs-dingtalk-access-token
    std::string admin_token;    // x-sim-admin-token
    std::string authorization;  // Authorization (rejected on /v1.0, §1)
};

// Wall-clock time in milliseconds since the epoch (DingTalk's timestamps).
int64_t wall_ms();

struct ApiResponse {
    int status = 200;
    std::string body;
    std::string content_type = "application/json;charset=utf-8";
    std::vector<std::pair<std::string, std::string>> headers;
    int delay_ms = 0;   // fault: answer after this long
    bool drop = false;  // fault: close the connection without answering
};

// Receives org changes; implemented by the event hub (stream + HTTP push).
class EventSink {
public:
    virtual ~EventSink() = default;
    virtual void publish(const OrgEvent& e) = 0;
    virtual void write_status(JsonWriter& w) const = 0;  // for GET /_sim/events
    virtual void force_disconnect(std::string_view reason) = 0;
    // Test knobs: close every stream connection abruptly (no disconnect frame); drop the next
    // `drop_next` events (never delivered by stream or push); hold new events `delay_ms`.
    virtual void cut_connections() = 0;
    virtual void set_event_faults(int drop_next, int delay_ms) = 0;
};

struct StreamTicket {
    std::vector<std::pair<std::string, std::string>> subscriptions;  // (type, topic)
    std::chrono::steady_clock::time_point issued;
};

class Simulator {
public:
    Simulator(SimOptions opts, std::unique_ptr<Org> org);
    void set_event_sink(EventSink* sink) { sink_ = sink; }

    ApiResponse handle(const ApiRequest& req);

    // Stream gateway: a ticket from connections/open is valid 90 s and single-use (§6).
    std::optional<StreamTicket> consume_ticket(std::string_view ticket);

    const Org& org() const { return *org_; }
    const SimOptions& options() const { return opts_; }

private:
    struct Query {
        std::vector<std::pair<std::string, std::string>> items;
        const std::string* get(std::string_view k) const;
    };
    struct Token {
        std::string value;
        std::chrono::steady_clock::time_point expires;
    };
    struct ApiStats {
        uint64_t calls = 0, throttled = 0, errors = 0;
        int64_t second = 0;
        uint64_t in_second = 0, admitted_in_second = 0, peak_qps = 0;
        int64_t first_ms = 0, last_ms = 0;  // monotonic: when the first and the latest call came
    };
    struct SourceWindow {
        int64_t window_start = 0;
        int64_t count = 0;
        int64_t banned_until = 0;
        uint64_t calls = 0, denied_ip = 0;
    };

    ApiResponse handle_admin(const ApiRequest& req, std::string_view path, const Query& q);
    ApiResponse dingtalk(const ApiRequest& req, std::string_view path, const Query& q);
    ApiResponse topapi(const ApiRequest& req, std::string_view path, const Query& q);
    ApiResponse get_token(const ApiRequest& req, const Query& q);
    ApiResponse new_access_token(const ApiRequest& req);
    ApiResponse open_connection(const ApiRequest& req);
    ApiResponse emp_leave_records(const Query& q);
    ApiResponse legacy_department_list(const ApiRequest& req, const Query& q);

    // Token store: one live token per app; repeat fetch returns it and extends it (§1).
    std::string issue_token();
    int64_t token_seconds_left() const;  // of the current access token
    bool token_valid(std::string_view t) const;

    void note_call(const std::string& api);  // per-API call counts and observed QPS
    // Returns true when this call exceeds the per-app per-API QPS (and counts stats).
    bool count_and_throttle(const std::string& api);
    bool allowed_source(std::string_view ip);  // counts denials
    bool source_in_list(std::string_view ip) const;

    ApiResponse oapi_error(int errcode, std::string_view errmsg, bool topapi_style = false);
    ApiResponse oapi_sub_error(std::string_view sub_code, std::string_view sub_msg);
    ApiResponse api_error(int status, std::string_view code, std::string_view message);
    ApiResponse deny_page();
    ApiResponse ok_result(JsonWriter& w);  // w holds the "result" value
    std::string request_id();
    ApiResponse throttle_response(bool api_host, std::string_view api);

    SimOptions opts_;
    std::unique_ptr<Org> org_;
    EventSink* sink_ = nullptr;
    FaultTable faults_;
    simdjson::dom::parser parser_;
    std::optional<Token> token_;
    std::unordered_map<std::string, StreamTicket> tickets_;
    std::map<std::string, ApiStats> api_stats_;
    std::map<std::string, SourceWindow> sources_;
    uint64_t total_calls_ = 0, total_throttled_ = 0, denied_ip_ = 0, denied_source_limit_ = 0;
    uint64_t faults_fired_ = 0, admin_calls_ = 0;
    int64_t global_second_ = 0;
    uint64_t global_in_second_ = 0, global_peak_qps_ = 0;
    uint64_t request_seq_ = 0;
};

}  // namespace sim
