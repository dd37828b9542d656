#pragma once
// DingTalkClient: the oapi client the sync uses. Calls are queued per API path and started from
// run() when (a) the API's token bucket has a token, (b) fewer than `concurrency` transfers are
// in flight and (c) a valid access token is held. The token is fetched on first use, refreshed
// 5 minutes before expiry and after a token error (the call is retried once, §1). Busy,
// throttle, 5xx and network failures are retried with exponential backoff and full jitter, at
// most `max_attempts` times; throttle answers wait at least 1 s (§4), lower that API's rate
// (AIMD, see limiter.h) and may be retried up to 3 * max_attempts times. Failures that no retry can
// fix (IP not allow-listed, bad AppKey/AppSecret, missing permission, proxy refusal, TLS) stop
// run() and are returned. Single-threaded: handlers run inside run() and may queue more calls.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "agent/dingtalk/errors.h"
#include "agent/dingtalk/http.h"
#include "agent/dingtalk/limiter.h"

namespace dingbridge::agent::dingtalk {

// The access token of an app and when to refresh it. Every client made from copies of one
// ClientSettings shares it: in run mode the event client and each full sync use one token, so a
// process fetches one every two hours instead of one per client (each fetch is a call, §1).
struct TokenCache {
    std::string owner;  // the host and app the token belongs to
    std::string token;
    std::chrono::steady_clock::time_point refresh_at{};
    // Counts the tokens fetched: a token error on a call sent before the latest fetch says
    // nothing about the new token (calls in flight together fail together, §1).
    std::uint64_t generation = 0;
};

struct ClientSettings {
    std::string oapi_base = "https://oapi.dingtalk.com";
    std::string app_key;
    std::string app_secret;  // secret: only ever placed in the gettoken URL
    double qps = 15;         // per API path; keep below DingTalk's 20/s
    double qps_total = 400;  // all APIs of the app together; below the per-IP 10000 calls / 20 s
    int max_attempts = 6;
    std::chrono::milliseconds backoff_base{200};
    std::chrono::milliseconds backoff_max{8000};
    TransportSettings transport;
    std::shared_ptr<TokenCache> token_cache = std::make_shared<TokenCache>();
};

struct ClientStats {
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
    std::uint64_t throttled = 0;
    std::uint64_t token_fetches = 0;
    std::uint64_t rate_cuts = 0;   // times a throttle answer lowered an API's rate
    bool quota_exhausted = false;  // a run() ended on 90020: the month's quota is used up
    // Calls asked for per API path (one per call(), plus each token fetch; retries not counted).
    std::map<std::string, std::uint64_t> calls_by_api;
};

class DingTalkClient {
public:
    // Parses and consumes a successful body; returns a failure (not consumed) to retry/report.
    using Handler = std::function<std::optional<ApiFailure>(std::string& body)>;
    using Failed = std::function<void(const ApiFailure&)>;

    explicit DingTalkClient(ClientSettings settings);

    // Queues a topapi POST with a JSON body.
    void call(const std::string& api, std::string json_body, Handler handler, Failed failed);
    // Queues a GET of a plain oapi path (e.g. /department/list); `query` is appended after the
    // access token ("id=1&fetch_child=true").
    void call_get(const std::string& api, std::string query, Handler handler, Failed failed);

    // Runs queued calls until none is left; `tick` is called about every 200 ms. Returns the
    // fatal failure that stopped the run, if any (pending calls are then dropped).
    std::optional<ApiFailure> run(const std::function<void()>& tick = {});

    // Ends the current run() as if `why` were fatal: queued calls are dropped, none is sent
    // after this (for a run that is lost anyway: every further call would be spent for nothing).
    void abort(ApiFailure why) {
        if (!fatal_) fatal_ = std::move(why);
    }

    // Fetches a token now (check-config): the token or the failure.
    std::optional<ApiFailure> ensure_token();

    const ClientStats& stats() const { return stats_; }
    static bool fatal(const ApiFailure& f);

private:
    using Clock = std::chrono::steady_clock;
    struct Pending {
        std::string api;
        std::string body;
        std::string query;  // GET only
        bool get = false;
        Handler handler;
        Failed failed;
        int attempt = 0;
        int throttles = 0;
        bool token_retried = false;
        std::uint64_t token_generation = 0;  // the TokenCache generation it was sent with
        Clock::time_point not_before{};
    };

    void start(Pending p);
    void start_token_fetch();
    void on_response(Pending p, HttpResponse&& r);
    void retry_later(Pending p, const ApiFailure& f);
    ApiFailure transport_failure(const std::string& api, const HttpResponse& r) const;
    std::string url_for(const std::string& api) const;

    ClientSettings settings_;
    HttpTransport transport_;
    RateLimiter limiter_;        // per API path
    RateLimiter total_limiter_;  // the whole app
    std::map<std::string, std::deque<Pending>> queues_;
    std::vector<Pending> delayed_;
    std::optional<ApiFailure> fatal_;
    // The cached token if it belongs to this app (settings_.token_cache), else empty.
    const std::string& token() const;
    bool token_valid(Clock::time_point now) const;
    void drop_token();
    std::string token_owner_;
    Clock::time_point token_retry_at_{};
    bool token_fetching_ = false;
    int token_failures_ = 0;
    std::mt19937_64 rng_;
    ClientStats stats_;
};

}  // namespace dingbridge::agent::dingtalk
