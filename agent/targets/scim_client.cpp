#include "agent/targets/scim_client.h"

#include <curl/curl.h>
#include <simdjson.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "agent/dingtalk/curl_util.h"

namespace dingbridge::agent {

namespace {

using Clock = std::chrono::steady_clock;

// Retry-After in seconds (an HTTP date is treated as absent: the backoff applies).
size_t read_header(char* data, size_t size, size_t n, void* user) {
    std::string_view line(data, size * n);
    constexpr std::string_view name = "retry-after:";
    if (line.size() > name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0) {
        long v = 0;
        bool digits = false;
        for (char ch : line.substr(name.size())) {
            if (ch >= '0' && ch <= '9') {
                v = std::min(v * 10 + (ch - '0'), 86400L);
                digits = true;
            } else if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
                digits = false;
                break;
            }
        }
        if (digits) *static_cast<long*>(user) = v;
    }
    return size * n;
}

bool retryable(const ScimResponse& r) {
    if (r.status == 0) return true;
    return r.status == 429 || r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504;
}

}  // namespace

std::string scim_url_encode(const std::string& v) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char ch : v) {
        if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            out += '%';
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
    }
    return out;
}

std::string scim_path_segment(const std::string& id) {
    if (id == "." || id == "..") return id == "." ? "%2E" : "%2E%2E";
    return scim_url_encode(id);
}

std::string ScimResponse::scim_type() const {
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    std::string_view t;
    if (p.parse(body).get(doc) || doc["scimType"].get(t)) return {};
    return std::string(t);
}

std::string ScimResponse::error(const std::string& what) const {
    if (status == 0) return what + ": " + network_error;
    std::string out = what + ": HTTP " + std::to_string(status);
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    std::string_view v;
    if (!p.parse(body).get(doc)) {
        if (!doc["scimType"].get(v)) out += " " + std::string(v);
        if (!doc["detail"].get(v)) out += ": " + std::string(v);
    }
    if (attempts > 1) out += " (after " + std::to_string(attempts) + " attempts)";
    return out;
}

struct ScimClient::Impl {
    struct Transfer {
        std::size_t index = 0;
        CURL* easy = nullptr;
        ScimResponse response;
        long retry_after = -1;
        char error[CURL_ERROR_SIZE] = {0};
        Clock::time_point not_before{};
    };

    ScimSettings s;
    CURLM* multi = nullptr;
    curl_slist* headers = nullptr;
    int unanswered = 0;  // requests in a row with no HTTP answer (a TLS failure is an answer of sorts)
    void note(const ScimResponse& r) { unanswered = r.status == 0 && !r.tls_error ? unanswered + 1 : 0; }
    std::vector<CURL*> idle;
    std::uint64_t requests = 0;
    Clock::time_point next_slot{};
    std::mt19937 rng{std::random_device{}()};

    CURL* take_easy() {
        if (idle.empty()) return curl_easy_init();
        CURL* e = idle.back();
        idle.pop_back();
        curl_easy_reset(e);
        return e;
    }

    void configure(Transfer& t, const ScimRequest& r) {
        CURL* e = t.easy;
        std::string url = s.base_url + r.path;
        curl_easy_setopt(e, CURLOPT_URL, url.c_str());
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        if (!s.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, s.ca_file.c_str());
        // The configured proxy or none: never http_proxy/https_proxy from the environment.
        curl_easy_setopt(e, CURLOPT_PROXY, s.proxy_url.c_str());
        if (!s.proxy_url.empty()) {
            curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
            if (!s.proxy_ca_file.empty()) curl_easy_setopt(e, CURLOPT_PROXY_CAINFO, s.proxy_ca_file.c_str());
        }
        curl_common_options(e, s.connect_timeout, s.timeout, &t.response.body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, read_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &t.retry_after);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
        if (r.method == "GET") {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        } else {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
            if (r.method != "DELETE") {
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.c_str());
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(r.body.size()));
            }
        }
    }

    // Waits for the rate limit's next slot (max_rate requests per second).
    void pace() {
        if (s.max_rate <= 0) return;
        auto now = Clock::now();
        if (next_slot > now) std::this_thread::sleep_until(next_slot);
        next_slot = std::max(now, next_slot) +
                    std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / s.max_rate));
    }

    std::chrono::milliseconds delay(const Transfer& t) {
        if (t.response.status == 429 && t.retry_after >= 0)
            return std::min(std::chrono::milliseconds(t.retry_after * 1000), s.backoff_max);
        auto d = s.backoff_base * (1LL << std::min(t.response.attempts - 1, 16));
        d = std::min<std::chrono::milliseconds>(d, s.backoff_max);
        std::uniform_int_distribution<long long> jitter(0, d.count() / 4);
        return d + std::chrono::milliseconds(jitter(rng));
    }

    void start(Transfer& t, const ScimRequest& r) {
        pace();
        t.easy = take_easy();
        t.response.body.clear();
        t.response.status = 0;
        t.retry_after = -1;
        t.error[0] = 0;
        ++t.response.attempts;
        configure(t, r);
        curl_multi_add_handle(multi, t.easy);
        ++requests;
    }

    // Collects finished transfers; returns them.
    std::vector<Transfer*> finished() {
        std::vector<Transfer*> done;
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
            if (msg->msg != CURLMSG_DONE) continue;
            Transfer* t = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
            curl_multi_remove_handle(multi, msg->easy_handle);
            if (msg->data.result != CURLE_OK) {
                t->response.network_error = t->error[0] ? t->error : curl_easy_strerror(msg->data.result);
                auto rc = msg->data.result;
                t->response.tls_error = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
                                        rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM;
            } else {
                t->response.network_error.clear();
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &t->response.status);
            }
            idle.push_back(msg->easy_handle);
            t->easy = nullptr;
            done.push_back(t);
        }
        return done;
    }

    void run(const std::vector<ScimRequest>& requests_in, std::vector<Transfer>& ts, std::size_t limit,
             const std::function<bool()>& before_retry);
};

void ScimClient::Impl::run(const std::vector<ScimRequest>& reqs, std::vector<Transfer>& ts, std::size_t limit,
                           const std::function<bool()>& before_retry) {
    std::vector<Transfer*> waiting;
    for (std::size_t i = 0; i < ts.size(); ++i) {
        ts[i].index = i;
        waiting.push_back(&ts[i]);
    }
    std::reverse(waiting.begin(), waiting.end());
    std::size_t running = 0;
    while (running > 0 || !waiting.empty()) {
        auto now = Clock::now();
        Clock::time_point wake = now + std::chrono::milliseconds(200);
        for (auto it = waiting.end(); it != waiting.begin() && running < limit;) {
            --it;
            if ((*it)->not_before > now) {
                wake = std::min(wake, (*it)->not_before);
                continue;
            }
            Transfer* t = *it;
            it = waiting.erase(it);
            if (t->response.attempts > 0 && t->response.status != 429 && before_retry && before_retry()) {
                t->response.status = 200;
                t->response.body.clear();
                continue;
            }
            start(*t, reqs[t->index]);
            ++running;
        }
        int still = 0;
        curl_multi_perform(multi, &still);
        for (Transfer* t : finished()) {
            --running;
            if (retryable(t->response) && t->response.attempts < s.max_attempts) {
                t->not_before = Clock::now() + delay(*t);
                waiting.push_back(t);
            }
        }
        if (running == 0 && waiting.empty()) break;
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now());
        if (running > 0) {
            int numfds = 0;
            curl_multi_poll(multi, nullptr, 0, static_cast<int>(std::clamp<long long>(wait.count(), 1, 200)), &numfds);
        } else if (wait.count() > 0) {
            std::this_thread::sleep_for(wait);
        }
    }
}

ScimClient::ScimClient(const ScimSettings& settings) : impl_(std::make_unique<Impl>()) {
    curl_global_once();
    impl_->s = settings;
    while (!impl_->s.base_url.empty() && impl_->s.base_url.back() == '/') impl_->s.base_url.pop_back();
    if (impl_->s.concurrency < 1) impl_->s.concurrency = 1;
    if (impl_->s.max_attempts < 1) impl_->s.max_attempts = 1;
    impl_->multi = curl_multi_init();
    curl_multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(impl_->s.concurrency));
    std::string auth = "Authorization: Bearer " + impl_->s.token;
    impl_->headers = curl_slist_append(nullptr, auth.c_str());
    impl_->headers = curl_slist_append(impl_->headers, "Content-Type: application/scim+json");
    impl_->headers = curl_slist_append(impl_->headers, "Accept: application/scim+json");
}

ScimClient::~ScimClient() {
    for (CURL* e : impl_->idle) curl_easy_cleanup(e);
    curl_multi_cleanup(impl_->multi);
    curl_slist_free_all(impl_->headers);
}

namespace {

ScimResponse not_sent(int unanswered) {
    ScimResponse r;
    r.network_error = "not sent: the server stopped answering (" + std::to_string(unanswered) +
                      " requests in a row got no answer); the next run tries again";
    return r;
}

}  // namespace

void ScimClient::reset() { impl_->unanswered = 0; }

ScimResponse ScimClient::send(const ScimRequest& request, const std::function<bool()>& before_retry) {
    if (impl_->unanswered >= kUnansweredInARow) return not_sent(impl_->unanswered);
    std::vector<Impl::Transfer> ts(1);
    impl_->run({request}, ts, 1, before_retry);
    impl_->note(ts[0].response);
    return std::move(ts[0].response);
}

std::vector<ScimResponse> ScimClient::send_all(const std::vector<ScimRequest>& requests) {
    std::vector<ScimResponse> out;
    out.reserve(requests.size());
    if (impl_->unanswered >= kUnansweredInARow) {
        for (std::size_t i = 0; i < requests.size(); ++i) out.push_back(not_sent(impl_->unanswered));
        return out;
    }
    std::vector<Impl::Transfer> ts(requests.size());
    impl_->run(requests, ts, static_cast<std::size_t>(impl_->s.concurrency), {});
    for (auto& t : ts) {
        impl_->note(t.response);
        out.push_back(std::move(t.response));
    }
    return out;
}

std::uint64_t ScimClient::requests_made() const { return impl_->requests; }

}  // namespace dingbridge::agent
