#include "agent/dingtalk/client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/dingtalk/parse.h"

namespace dingbridge::agent::dingtalk {

namespace {

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

// Best-effort request id of a non-envelope answer.
std::string request_id_of(const HttpResponse& r) { return r.request_id_header; }

}  // namespace

DingTalkClient::DingTalkClient(ClientSettings settings)
    : settings_(std::move(settings)),
      transport_(settings_.transport),
      limiter_(settings_.qps, RateLimiter::api_burst),
      total_limiter_(settings_.qps_total, 1.0),
      rng_(std::random_device{}()) {
    while (!settings_.oapi_base.empty() && settings_.oapi_base.back() == '/') settings_.oapi_base.pop_back();
    if (!settings_.token_cache) settings_.token_cache = std::make_shared<TokenCache>();
    token_owner_ = settings_.oapi_base + '\n' + settings_.app_key;
}

bool DingTalkClient::fatal(const ApiFailure& f) {
    switch (f.kind) {
        case FailureKind::ip_denied:
        case FailureKind::permission:
        case FailureKind::bad_credentials:
        case FailureKind::quota:
        case FailureKind::proxy_refused:
        case FailureKind::tls:
            return true;
        default:
            return false;
    }
}

std::string DingTalkClient::url_for(const std::string& api) const {
    return settings_.oapi_base + api + "?access_token=" + url_encode(token());
}

void DingTalkClient::call(const std::string& api, std::string json_body, Handler handler, Failed failed) {
    Pending p;
    p.api = api;
    p.body = std::move(json_body);
    p.handler = std::move(handler);
    p.failed = std::move(failed);
    ++stats_.calls_by_api[api];
    queues_[api].push_back(std::move(p));
}

void DingTalkClient::call_get(const std::string& api, std::string query, Handler handler, Failed failed) {
    Pending p;
    p.api = api;
    p.query = std::move(query);
    p.get = true;
    p.handler = std::move(handler);
    p.failed = std::move(failed);
    ++stats_.calls_by_api[api];
    queues_[api].push_back(std::move(p));
}

ApiFailure DingTalkClient::transport_failure(const std::string& api, const HttpResponse& r) const {
    ApiFailure f;
    f.api = api;
    f.request_id = request_id_of(r);
    if (r.curl_code != CURLE_OK) {
        f.detail = r.curl_error;
        if (r.connect_status >= 300) {
            f.kind = FailureKind::proxy_refused;
            f.proxy_status = static_cast<int>(r.connect_status);
            return f;
        }
        switch (r.curl_code) {
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CACERT_BADFILE:
            case CURLE_SSL_CERTPROBLEM:
            case CURLE_SSL_ISSUER_ERROR:
            case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                f.kind = FailureKind::tls;
                break;
            default:
                f.kind = FailureKind::network;
                break;
        }
        return f;
    }
    f.kind = FailureKind::http_status;
    f.http_status = static_cast<int>(r.status);
    return f;
}

void DingTalkClient::start(Pending p) {
    HttpRequest req;
    req.method = p.get ? "GET" : "POST";
    req.url = url_for(p.api);
    if (p.get) {
        if (!p.query.empty()) req.url += "&" + p.query;
    } else {
        req.body = p.body;
    }
    ++stats_.requests;
    p.token_generation = settings_.token_cache->generation;
    auto holder = std::make_shared<Pending>(std::move(p));
    transport_.submit(std::move(req),
                      [this, holder](HttpResponse&& r) { on_response(std::move(*holder), std::move(r)); });
}

void DingTalkClient::retry_later(Pending p, const ApiFailure& f) {
    // Throttle answers mean "slower", not "broken": while the rate adapts they get a larger
    // budget than other failures (still bounded: a throttle that never ends gives up).
    if (f.kind == FailureKind::throttle)
        ++p.throttles;
    else
        ++p.attempt;
    if (p.attempt >= settings_.max_attempts || p.throttles >= 3 * settings_.max_attempts) {
        spdlog::warn("{}: giving up after {} attempts: {}", p.api, p.attempt + p.throttles, f.message());
        p.failed(f);
        return;
    }
    ++stats_.retries;
    auto cap = std::min<std::int64_t>(settings_.backoff_max.count(), settings_.backoff_base.count()
                                                                         << std::min(p.attempt + p.throttles, 16));
    std::uniform_int_distribution<std::int64_t> jitter(cap / 2, std::max<std::int64_t>(cap, 1));
    std::int64_t delay = jitter(rng_);
    if (f.kind == FailureKind::throttle) {
        ++stats_.throttled;
        delay = std::max<std::int64_t>(delay, 1000);  // §4: sleep about 1 s
        if (limiter_.on_throttle(p.api, Clock::now())) {
            ++stats_.rate_cuts;
            spdlog::warn("{}: DingTalk throttled the call ({}); lowering this API's rate to {:.1f}/s", p.api,
                         f.sub_code.empty() ? std::to_string(f.errcode) : f.sub_code, limiter_.rate(p.api));
        }
    }
    spdlog::debug("{}: retry {} in {} ms: {}", p.api, p.attempt, delay, f.message());
    p.not_before = Clock::now() + std::chrono::milliseconds(delay);
    delayed_.push_back(std::move(p));
}

void DingTalkClient::on_response(Pending p, HttpResponse&& r) {
    if (r.curl_code != CURLE_OK || (r.status != 200 && r.body.empty()) || r.status >= 500) {
        ApiFailure f = transport_failure(p.api, r);
        if (r.curl_code == CURLE_OK && r.status >= 500) f.kind = FailureKind::http_status;
        if (fatal(f)) {
            if (!fatal_) fatal_ = f;
            return;
        }
        if (f.retryable())
            retry_later(std::move(p), f);
        else
            p.failed(f);
        return;
    }
    std::optional<ApiFailure> f = p.handler(r.body);
    if (!f) {
        limiter_.on_success(p.api);
        return;
    }
    if (f->request_id.empty()) f->request_id = request_id_of(r);
    if (r.status != 200 && f->kind == FailureKind::malformed) {
        f->kind = FailureKind::http_status;
        f->http_status = static_cast<int>(r.status);
    }
    if (f->kind == FailureKind::token) {
        if (p.token_retried) {
            p.failed(*f);
            return;
        }
        p.token_retried = true;
        // Refetch, then retry this call once (§1); once per token: the other calls sent with it
        // fail too and wait for the same fetch, not one fetch each.
        if (p.token_generation == settings_.token_cache->generation) drop_token();
        queues_[p.api].push_front(std::move(p));
        return;
    }
    if (fatal(*f)) {
        if (!fatal_) fatal_ = *f;
        return;
    }
    if (f->retryable())
        retry_later(std::move(p), *f);
    else
        p.failed(*f);
}

void DingTalkClient::start_token_fetch() {
    token_fetching_ = true;
    ++stats_.token_fetches;
    ++stats_.requests;
    ++stats_.calls_by_api["/gettoken"];
    HttpRequest req;
    req.method = "GET";
    Clock::time_point ignored;
    (void)total_limiter_.try_take("*", Clock::now(), ignored);
    req.url = settings_.oapi_base + "/gettoken?appkey=" + url_encode(settings_.app_key) +
              "&appsecret=" + url_encode(settings_.app_secret);
    transport_.submit(std::move(req), [this](HttpResponse&& r) {
        token_fetching_ = false;
        const std::string api = "/gettoken";
        if (r.curl_code != CURLE_OK || r.status != 200) {
            ApiFailure f = transport_failure(api, r);
            if (fatal(f) || !f.retryable() || ++token_failures_ >= settings_.max_attempts) {
                if (!fatal_) fatal_ = f;
            } else {
                token_retry_at_ =
                    Clock::now() + std::chrono::milliseconds(settings_.backoff_base.count() << token_failures_);
            }
            return;
        }
        auto reply = parse_gettoken(api, r.body);
        if (!reply.ok()) {
            const ApiFailure& f = reply.failure();
            if (f.retryable() && ++token_failures_ < settings_.max_attempts) {
                token_retry_at_ = Clock::now() + std::chrono::milliseconds(std::max<std::int64_t>(
                                                     1000, settings_.backoff_base.count() << token_failures_));
                return;
            }
            if (!fatal_) fatal_ = f;
            return;
        }
        token_failures_ = 0;
        TokenCache& cache = *settings_.token_cache;
        cache.owner = token_owner_;
        cache.token = reply.value().access_token;
        ++cache.generation;
        // Refresh 5 minutes before expiry (what the official SDKs do), or at half-life if shorter.
        auto ttl = std::chrono::seconds(reply.value().expires_in);
        auto margin = std::min<std::chrono::seconds>(std::chrono::seconds(300), ttl / 2);
        cache.refresh_at = Clock::now() + ttl - margin;
    });
}

std::optional<ApiFailure> DingTalkClient::ensure_token() { return run(); }

const std::string& DingTalkClient::token() const {
    static const std::string none;
    const TokenCache& cache = *settings_.token_cache;
    return cache.owner == token_owner_ ? cache.token : none;
}

bool DingTalkClient::token_valid(Clock::time_point now) const {
    return !token().empty() && now < settings_.token_cache->refresh_at;
}

void DingTalkClient::drop_token() {
    TokenCache& cache = *settings_.token_cache;
    if (cache.owner == token_owner_) cache.token.clear();
}

std::optional<ApiFailure> DingTalkClient::run(const std::function<void()>& tick) {
    fatal_.reset();
    // The first tick comes with the first answers, not 200 ms in: a run's calls reach its history
    // row (the month's count if the process is killed) from the start.
    auto last_tick = Clock::now() - std::chrono::milliseconds(200);
    auto has_work = [&] {
        if (!delayed_.empty()) return true;
        for (auto& [api, q] : queues_)
            if (!q.empty()) return true;
        return false;
    };
    while (!fatal_) {
        auto now = Clock::now();
        // Due retries go back to the front of their queues.
        for (auto it = delayed_.begin(); it != delayed_.end();) {
            if (it->not_before <= now) {
                queues_[it->api].push_front(std::move(*it));
                it = delayed_.erase(it);
            } else {
                ++it;
            }
        }
        const bool token_ok = token_valid(now);
        const bool work = has_work();
        if (!work && transport_.in_flight() == 0 && !token_fetching_ && (token_ok || token_failures_ == 0) &&
            !token().empty())
            break;
        Clock::time_point wake = now + std::chrono::milliseconds(200);
        if (!token_ok) {
            if (!token_fetching_ && now >= token_retry_at_) start_token_fetch();
            wake = std::min(wake, token_retry_at_);
        } else {
            for (auto& [api, q] : queues_) {
                while (!q.empty() && transport_.in_flight() < transport_.max_in_flight()) {
                    Clock::time_point ready;
                    if (!total_limiter_.available("*", now, ready) || !limiter_.try_take(api, now, ready)) {
                        wake = std::min(wake, ready);
                        break;
                    }
                    (void)total_limiter_.try_take("*", now, ready);
                    Pending p = std::move(q.front());
                    q.pop_front();
                    start(std::move(p));
                }
            }
        }
        for (auto& d : delayed_) wake = std::min(wake, d.not_before);
        // Rounded up: truncating woke the loop just before a token was due, costing a second
        // wakeup per request at the QPS ceiling.
        auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now());
        wait = std::clamp(wait, std::chrono::milliseconds(1), std::chrono::milliseconds(200));
        if (transport_.in_flight() > 0) {
            transport_.poll(wait);
        } else {
            struct timespec ts {
                0, static_cast<long>(wait.count()) * 1000000L
            };
            nanosleep(&ts, nullptr);
        }
        if (tick && Clock::now() - last_tick >= std::chrono::milliseconds(200)) {
            last_tick = Clock::now();
            tick();
        }
    }
    if (fatal_) {
        if (fatal_->kind == FailureKind::quota) stats_.quota_exhausted = true;
        queues_.clear();
        delayed_.clear();
        // Let in-flight transfers finish so that the transport is clean; their results are ignored.
        while (transport_.in_flight() > 0) transport_.poll(std::chrono::milliseconds(50));
        queues_.clear();
        delayed_.clear();
    }
    if (tick) tick();
    return fatal_;
}

}  // namespace dingbridge::agent::dingtalk
