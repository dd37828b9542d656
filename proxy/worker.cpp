#include "proxy/worker.h"

#include <event2/thread.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "proxy/tunnel.h"

namespace dingbridge::proxy {

Worker::Worker(unsigned index, ConfigSource config, std::shared_ptr<spdlog::logger> access_log)
    : index_(index), config_(std::move(config)), access_log_(std::move(access_log)) {
    base_ = event_base_new();
    if (base_ == nullptr) throw std::runtime_error("cannot create event loop");
    // Name servers and /etc/hosts from the system; queries are asynchronous on this loop.
    dns_ = evdns_base_new(base_, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (dns_ == nullptr) {
        // No usable resolv.conf: continue with the hosts file only, lookups of other names fail.
        dns_ = evdns_base_new(base_, 0);
        if (dns_ == nullptr) throw std::runtime_error("cannot create DNS resolver");
        evdns_base_load_hosts(dns_, nullptr);
        spdlog::warn("no name servers configured (/etc/resolv.conf); only /etc/hosts names resolve");
    }
    const auto cfg = config_();
    const std::string timeout = std::to_string(std::max<long long>(1, cfg->dns_timeout.count() / 1000));
    evdns_base_set_option(dns_, "timeout:", timeout.c_str());
    evdns_base_set_option(dns_, "attempts:", "2");
    reap_event_ = event_new(base_, -1, 0, &Worker::on_reap, this);
    resume_accept_ = evtimer_new(base_, &Worker::on_resume_accept, this);
    stop_event_ = event_new(base_, -1, 0, &Worker::on_stop, this);
}

Worker::~Worker() {
    join();
    // DNS first, without running callbacks: the tunnels they would call are deleted next.
    if (dns_) evdns_base_free(dns_, 0);
    dns_ = nullptr;
    for (Tunnel* t : live_) delete t;
    live_.clear();
    for (auto* l : listeners_) evconnlistener_free(l);
    if (reap_event_) event_free(reap_event_);
    if (resume_accept_) event_free(resume_accept_);
    if (stop_event_) event_free(stop_event_);
    if (dns_) evdns_base_free(dns_, 1);
    if (base_) event_base_free(base_);
}

void Worker::add_listener(int fd) {
    evconnlistener* l = evconnlistener_new(base_, &Worker::on_accept, this,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (l == nullptr) throw std::runtime_error("cannot watch listening socket");
    evconnlistener_set_error_cb(l, &Worker::on_accept_error);
    listeners_.push_back(l);
}

void Worker::set_access_log(std::shared_ptr<spdlog::logger> log) { access_log_ = std::move(log); }

void Worker::start() {
    thread_ = std::thread([this] {
        event_base_dispatch(base_);
    });
}

void Worker::stop() {
    event_active(stop_event_, EV_READ, 0);
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

void Worker::on_stop(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    for (auto* l : self->listeners_) evconnlistener_disable(l);
    event_base_loopexit(self->base_, nullptr);
}

void Worker::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    self->stats_.accepted++;
    auto* tunnel = new Tunnel(*self, self->config_(), fd, addr);
    self->live_.insert(tunnel);
    self->open_++;
    tunnel->start();
}

void Worker::on_accept_error(evconnlistener* listener, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    const int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of spinning on the error.
        spdlog::warn("accept failed ({}); pausing new connections for 100 ms", std::strerror(err));
        for (auto* l : self->listeners_) evconnlistener_disable(l);
        timeval tv{0, 100 * 1000};
        evtimer_add(self->resume_accept_, &tv);
        (void)listener;
        return;
    }
    spdlog::warn("accept failed: {}", std::strerror(err));
}

void Worker::on_resume_accept(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    for (auto* l : self->listeners_) evconnlistener_enable(l);
}

void Worker::retire(Tunnel* tunnel) {
    if (!tunnel->reapable()) return;
    retired_.push_back(tunnel);
    event_active(reap_event_, EV_READ, 0);
}

void Worker::on_reap(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    std::vector<Tunnel*> batch;
    batch.swap(self->retired_);
    for (Tunnel* t : batch) {
        if (self->live_.erase(t) == 0) continue;  // already reaped
        delete t;
        self->open_--;
    }
}

void Worker::count_result(int status) {
    if (status == 200) stats_.tunnels++;
    else stats_.refused++;
}

std::string Worker::timestamp() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto secs = time_point_cast<seconds>(now);
    const auto ms = duration_cast<milliseconds>(now - secs).count();
    const std::time_t t = system_clock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

}  // namespace dingbridge::proxy
