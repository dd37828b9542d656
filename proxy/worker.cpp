#include "proxy/worker.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <utility>

#include "proxy/tunnel.h"
#include "shared/net.h"

namespace dingbridge::proxy {

Worker::Worker(unsigned index, ConfigSource config, std::shared_ptr<spdlog::logger> access_log, SharedState& shared)
    : index_(index), config_(std::move(config)), access_log_(std::move(access_log)), shared_(shared) {
    base_ = event_base_new();
    if (base_ == nullptr) throw std::runtime_error("cannot create event loop");
    // Name servers and /etc/hosts from the system; queries are asynchronous on this loop.
    dns_ = evdns_base_new(base_, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (dns_ == nullptr) {
        // No usable resolv.conf: continue with the hosts file only, lookups of other names fail.
        dns_ = evdns_base_new(base_, 0);
        if (dns_ == nullptr) throw std::runtime_error("cannot create DNS resolver");
        evdns_base_load_hosts(dns_, nullptr);
        if (index_ == 0) spdlog::warn("no name servers configured (/etc/resolv.conf); only /etc/hosts names resolve");
    }
    const auto cfg = config_();
    stages_.count_short_turns_in(&shared_.metrics.short_turns());
    stages_.count_spliced_bytes_in(&shared_.metrics.spliced_bytes());
    const std::string timeout = std::to_string(std::max<long long>(1, cfg->dns_timeout.count() / 1000));
    evdns_base_set_option(dns_, "timeout:", timeout.c_str());
    evdns_base_set_option(dns_, "attempts:", "2");
    // libevent's default is 64 queries in flight (32 lookups); kLookupsPerTenant keeps one tenant
    // from holding them all.
    evdns_base_set_option(dns_, "max-inflight:", std::to_string(2 * kLookupsInFlight).c_str());
    reap_event_ = event_new(base_, -1, 0, &Worker::on_reap, this);
    resume_accept_ = evtimer_new(base_, &Worker::on_resume_accept, this);
    stop_event_ = event_new(base_, -1, 0, &Worker::on_stop, this);
    stop_accepting_event_ = event_new(base_, -1, 0, &Worker::on_stop_accepting, this);
    inbox_event_ = event_new(base_, -1, 0, &Worker::on_inbox, this);
    offload_ =
        std::make_unique<SendOffload>(base_, stages_, shared_.metrics.send_thread_bytes(), shared_.bulk_directions);
}

Worker::~Worker() {
    join();
    // No accept in the loop turns below: a new client could be handed to a sibling worker
    // destroyed already (stopping without a drain leaves the listeners open until here).
    for (auto& slot : listeners_)
        if (slot->listener) evconnlistener_free(std::exchange(slot->listener, nullptr));
    // Cancelled lookups report back from deferred callbacks: run the loop until they have, so
    // that evdns frees their requests (a lookup pending at exit would otherwise leak).
    auto dns_pending = [this] {
        for (Tunnel* t : live_)
            if (t->waiting_for_dns()) return true;
        return false;
    };
    for (int i = 0; i < 100 && dns_pending(); ++i) event_base_loop(base_, EVLOOP_NONBLOCK | EVLOOP_ONCE);
    // Then DNS, without running callbacks: the tunnels they would call are deleted next.
    if (dns_) evdns_base_free(dns_, 0);
    dns_ = nullptr;
    for (Tunnel* t : live_) delete t;
    live_.clear();
    offload_.reset();  // every job is orphaned now; its descriptors close once the thread is joined
    for (event* e : {reap_event_, resume_accept_, stop_event_, stop_accepting_event_, inbox_event_})
        if (e) event_free(e);
    if (base_) event_base_free(base_);
}

void Worker::add_listener(int fd, unsigned index) {
    auto slot = std::make_unique<ListenerSlot>(ListenerSlot{this, index, nullptr});
    slot->listener = evconnlistener_new(base_, &Worker::on_accept, slot.get(),
                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (slot->listener == nullptr) throw std::runtime_error("cannot watch listening socket");
    evconnlistener_set_error_cb(slot->listener, &Worker::on_accept_error);
    listeners_.push_back(std::move(slot));
}

void Worker::start() {
    thread_ = std::thread([this] { event_base_dispatch(base_); });
}

void Worker::stop() { event_active(stop_event_, EV_READ, 0); }

void Worker::stop_accepting() {
    // Test failpoint: workers that get to the drain half a second late, as on a loaded host, for
    // the test that /healthz turns 503 only once every listener is closed.
    static const bool late = [] {
        const char* armed = std::getenv("DINGBRIDGE_PROXY_FAILPOINT");
        return armed != nullptr && std::strcmp(armed, "late-stop-accepting") == 0;
    }();
    if (late) {
        const timeval half_second{0, 500000};
        event_add(stop_accepting_event_, &half_second);
        return;
    }
    event_active(stop_accepting_event_, EV_READ, 0);
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

void Worker::on_stop(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    // Tunnels still open now are cut: each gets its access-log line, and pending DNS lookups are
    // cancelled (their callbacks run from the loop turns in ~Worker).
    const std::vector<Tunnel*> open(self->live_.begin(), self->live_.end());
    for (Tunnel* t : open) t->cut_at_shutdown();
    event_base_loopexit(self->base_, nullptr);
}

void Worker::on_stop_accepting(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    evtimer_del(self->resume_accept_);
    for (auto& slot : self->listeners_) {
        if (slot->listener) evconnlistener_free(slot->listener);  // closes the socket: no new clients
        slot->listener = nullptr;
    }
    self->stopped_accepting_.store(true, std::memory_order_release);
    // Throttled replies held for auth_failures.reply_delay go out now rather than hold up the drain.
    const std::vector<Tunnel*> open(self->live_.begin(), self->live_.end());
    for (Tunnel* t : open) t->end_reply_delay();
}

void Worker::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len, void* arg) {
    auto* slot = static_cast<ListenerSlot*>(arg);
    Worker* self = slot->worker;
    auto config = self->config_();
    Metrics& metrics = self->shared_.metrics;
    if (config->max_connections != 0 && metrics.open_connections() >= config->max_connections) {
        // At the global limit: answer once, close, never queue (no busy loop, no memory).
        static constexpr char kBusy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\nproxy connection limit reached\n";
        (void)!::send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
        metrics.count_denial(Denial::max_connections);
        return;
    }
    // Counted from here until its tenant admits it or it closes (the Tunnel gives the slot back).
    const IpAddress source = IpAddress::from_sockaddr(addr).value_or(IpAddress{});
    if (!self->shared_.unauthorised.take(source, config->max_pending_per_source)) {
        // One source holds its share of connections that are not yet authorised: refuse at once,
        // so that it cannot take every max_connections slot from the tenants.
#define DINGBRIDGE_SOURCE_BUSY_TEXT "too many unauthorised connections from this source\n"
        static constexpr char kSourceBusy[] =
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 51\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n" DINGBRIDGE_SOURCE_BUSY_TEXT;
        static_assert(sizeof DINGBRIDGE_SOURCE_BUSY_TEXT - 1 == 51, "Content-Length is the text's length");
#undef DINGBRIDGE_SOURCE_BUSY_TEXT
        if (!config->listeners[slot->index].tls_context)  // a TLS client could not read it
            (void)!::send(fd, kSourceBusy, sizeof kSourceBusy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
        metrics.count_denial(Denial::source_connections);
        self->source_capped_.warn(
            "source {} holds {} connections not yet authorised (limits.max_pending_per_source); refusing more",
            source.is_v4() ? source.to_string() : source.to_string() + " (its /64)", config->max_pending_per_source);
        return;
    }
    Worker* target = self->least_busy();
    target->open_++;
    metrics.connection_opened();
    if (target == self) {
        self->adopt(fd, addr, slot->index, std::move(config));
        return;
    }
    // The descriptor travels with the task; a task dropped unrun (its worker stopped) closes it
    // and gives back its source's slot.
    struct Handoff {
        int fd = -1;
        sockaddr_storage address{};
        unsigned index = 0;
        SourceSlots* slots = nullptr;
        IpAddress source;
        Handoff() = default;
        Handoff(const Handoff&) = delete;
        Handoff& operator=(const Handoff&) = delete;
        ~Handoff() {
            if (fd < 0) return;
            ::close(fd);
            slots->release(source);
        }
    };
    auto handoff = std::make_shared<Handoff>();
    handoff->slots = &self->shared_.unauthorised;
    handoff->source = source;
    handoff->fd = fd;
    handoff->index = slot->index;
    std::memcpy(&handoff->address, addr,
                std::min<std::size_t>(static_cast<std::size_t>(len), sizeof(sockaddr_storage)));
    target->post([target, handoff] {
        const int taken = std::exchange(handoff->fd, -1);
        target->adopt(taken, reinterpret_cast<const sockaddr*>(&handoff->address), handoff->index, target->config_());
    });
}

Worker* Worker::least_busy() {
    const std::size_t mine = open_.load(std::memory_order_relaxed);
    Worker* best = this;
    std::size_t fewest = mine;
    for (Worker* w : siblings_) {
        const std::size_t n = w->open_.load(std::memory_order_relaxed);
        if (n < fewest) {
            best = w;
            fewest = n;
        }
    }
    // A hand-off costs a cross-thread wakeup: only for a clear imbalance (any with a few
    // tunnels, an eighth with many), never for the jitter of short-lived connections.
    return mine > fewest + (mine + fewest) / 8 ? best : this;
}

void Worker::adopt(int fd, const sockaddr* addr, unsigned listener_index, std::shared_ptr<const ProxyConfig> config) {
    auto* tunnel = new Tunnel(*this, std::move(config), fd, addr, listener_index);
    live_.insert(tunnel);
    tunnel->start();
}

void Worker::on_accept_error(evconnlistener*, void* arg) {
    auto* slot = static_cast<ListenerSlot*>(arg);
    Worker* self = slot->worker;
    const int err = EVUTIL_SOCKET_ERROR();
    if (accept_out_of_resources(err)) {
        // Out of descriptors: stop accepting for a moment instead of spinning on the error.
        self->accept_failed_.warn("accept failed ({}); pausing new connections for 100 ms", std::strerror(err));
        for (auto& s : self->listeners_)
            if (s->listener) evconnlistener_disable(s->listener);
        timeval tv{0, 100 * 1000};
        evtimer_add(self->resume_accept_, &tv);
        return;
    }
    self->accept_failed_.warn("accept failed: {}", std::strerror(err));
}

void Worker::on_resume_accept(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    for (auto& s : self->listeners_)
        if (s->listener) evconnlistener_enable(s->listener);
}

TenantRuntime& Worker::tenant_runtime(const std::string& name) {
    auto it = runtimes_.find(name);
    if (it != runtimes_.end()) return *it->second;
    TenantRuntime& rt = shared_.metrics.tenant(name);
    runtimes_.emplace(name, &rt);
    return rt;
}

void Worker::retire(Tunnel* tunnel) {
    if (!tunnel->reapable()) return;
    retired_.push_back(tunnel);
    event_active(reap_event_, EV_READ, 0);
}

std::vector<Tunnel*>* Worker::waiting_for_check(const std::string& key) {
    const auto it = checks_.find(key);
    return it == checks_.end() ? nullptr : &it->second;
}

std::vector<Tunnel*> Worker::end_check(const std::string& key) {
    std::vector<Tunnel*> waiting;
    if (const auto it = checks_.find(key); it != checks_.end()) {
        waiting = std::move(it->second);
        checks_.erase(it);
    }
    return waiting;
}

void Worker::post(std::function<void()> task) {
    {
        std::lock_guard<std::mutex> lock(inbox_mutex_);
        inbox_.push_back(std::move(task));
    }
    event_active(inbox_event_, EV_READ, 0);
}

void Worker::on_inbox(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard<std::mutex> lock(self->inbox_mutex_);
        batch.swap(self->inbox_);
    }
    for (auto& task : batch) task();
}

void Worker::on_reap(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    std::vector<Tunnel*> batch;
    batch.swap(self->retired_);
    for (Tunnel* t : batch) {
        if (self->live_.erase(t) == 0) continue;  // already reaped
        delete t;
        self->open_--;
        self->shared_.metrics.connection_closed();
    }
}

std::string Worker::timestamp() {
    using namespace std::chrono;
    // The date and time part changes once a second; format it then, not on every log line.
    thread_local std::time_t cached_second = -1;
    thread_local char cached[80];
    const auto now = system_clock::now();
    const auto secs = time_point_cast<seconds>(now);
    const auto ms = static_cast<int>(duration_cast<milliseconds>(now - secs).count());
    const std::time_t t = system_clock::to_time_t(secs);
    if (t != cached_second) {
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_second = t;
    }
    std::string out(cached);
    out += static_cast<char>('0' + ms / 100);
    out += static_cast<char>('0' + ms / 10 % 10);
    out += static_cast<char>('0' + ms % 10);
    out += 'Z';
    return out;
}

}  // namespace dingbridge::proxy
