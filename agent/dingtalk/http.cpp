#include "agent/dingtalk/http.h"

#include <curl/curl.h>

#include <cstring>
#include <map>
#include <vector>

#include "agent/dingtalk/curl_util.h"

namespace dingbridge::agent::dingtalk {

namespace {

size_t read_header(char* data, size_t size, size_t n, void* user) {
    std::string_view line(data, size * n);
    constexpr std::string_view name = "x-acs-request-id:";
    if (line.size() > name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0) {
        auto v = line.substr(name.size());
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
        static_cast<std::string*>(user)->assign(v);
    }
    return size * n;
}

}  // namespace

struct HttpTransport::Impl {
    struct Transfer {
        CURL* easy = nullptr;
        HttpRequest request;
        HttpResponse response;
        std::function<void(HttpResponse&&)> done;
        char error[CURL_ERROR_SIZE] = {0};
    };

    TransportSettings settings;
    CURLM* multi = nullptr;
    curl_slist* json_headers = nullptr;
    std::vector<CURL*> idle;  // reusable easy handles (keep their connection hints)
    std::map<CURL*, std::unique_ptr<Transfer>> running;
    std::uint64_t requests = 0;

    CURL* take_easy() {
        if (!idle.empty()) {
            CURL* e = idle.back();
            idle.pop_back();
            curl_easy_reset(e);
            return e;
        }
        return curl_easy_init();
    }

    void configure(Transfer& t) {
        CURL* e = t.easy;
        curl_easy_setopt(e, CURLOPT_URL, t.request.url.c_str());
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!settings.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, settings.ca_file.c_str());
        // Never pick up http_proxy/https_proxy from the environment: the configured proxy is the
        // egress path, and "direct" must mean direct.
        curl_easy_setopt(e, CURLOPT_PROXY, settings.proxy_url.c_str());
        if (!settings.proxy_url.empty()) {
            curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
            if (!settings.proxy_username.empty()) {
                curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, settings.proxy_username.c_str());
                curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, settings.proxy_password.c_str());
                curl_easy_setopt(e, CURLOPT_PROXYAUTH, CURLAUTH_BASIC);
            }
            if (!settings.proxy_ca_file.empty())
                curl_easy_setopt(e, CURLOPT_PROXY_CAINFO, settings.proxy_ca_file.c_str());
            curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
            curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
        }
        curl_common_options(e, settings.connect_timeout, settings.request_timeout, &t.response.body);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, read_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &t.response.request_id_header);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
        if (t.request.method == "POST") {
            curl_easy_setopt(e, CURLOPT_POST, 1L);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.request.body.c_str());
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(t.request.body.size()));
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, json_headers);
        } else {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
    }
};

HttpTransport::HttpTransport(TransportSettings settings) : impl_(std::make_unique<Impl>()) {
    curl_global_once();
    impl_->settings = std::move(settings);
    if (impl_->settings.max_in_flight < 1) impl_->settings.max_in_flight = 1;
    impl_->multi = curl_multi_init();
    curl_multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(impl_->settings.max_in_flight));
    curl_multi_setopt(impl_->multi, CURLMOPT_MAXCONNECTS, static_cast<long>(impl_->settings.max_in_flight + 2));
    impl_->json_headers = curl_slist_append(nullptr, "Content-Type: application/json");
    impl_->json_headers = curl_slist_append(impl_->json_headers, "Accept: application/json");
}

HttpTransport::~HttpTransport() {
    for (auto& [easy, t] : impl_->running) {
        curl_multi_remove_handle(impl_->multi, easy);
        curl_easy_cleanup(easy);
    }
    for (CURL* e : impl_->idle) curl_easy_cleanup(e);
    curl_multi_cleanup(impl_->multi);
    curl_slist_free_all(impl_->json_headers);
}

void HttpTransport::submit(HttpRequest request, std::function<void(HttpResponse&&)> done) {
    auto t = std::make_unique<Impl::Transfer>();
    t->easy = impl_->take_easy();
    t->request = std::move(request);
    t->done = std::move(done);
    impl_->configure(*t);
    curl_multi_add_handle(impl_->multi, t->easy);
    ++impl_->requests;
    impl_->running.emplace(t->easy, std::move(t));
}

void HttpTransport::poll(std::chrono::milliseconds max_wait) {
    int still = 0;
    curl_multi_perform(impl_->multi, &still);
    if (!impl_->running.empty()) {
        int numfds = 0;
        curl_multi_poll(impl_->multi, nullptr, 0, static_cast<int>(max_wait.count()), &numfds);
        curl_multi_perform(impl_->multi, &still);
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(impl_->multi, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* easy = msg->easy_handle;
        auto it = impl_->running.find(easy);
        if (it == impl_->running.end()) continue;
        std::unique_ptr<Impl::Transfer> t = std::move(it->second);
        impl_->running.erase(it);
        curl_multi_remove_handle(impl_->multi, easy);
        t->response.curl_code = msg->data.result;
        if (msg->data.result != CURLE_OK)
            t->response.curl_error = t->error[0] ? std::string(t->error) : curl_easy_strerror(msg->data.result);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->response.status);
        curl_easy_getinfo(easy, CURLINFO_HTTP_CONNECTCODE, &t->response.connect_status);
        impl_->idle.push_back(easy);
        t->done(std::move(t->response));
    }
}

int HttpTransport::in_flight() const { return static_cast<int>(impl_->running.size()); }
int HttpTransport::max_in_flight() const { return impl_->settings.max_in_flight; }
std::uint64_t HttpTransport::requests_made() const { return impl_->requests; }

}  // namespace dingbridge::agent::dingtalk
