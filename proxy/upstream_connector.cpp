#include "proxy/upstream_connector.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "proxy/timer.h"
#include "proxy/worker.h"
#include "shared/enum_table.h"

namespace dingbridge::proxy {

UpstreamConnector::UpstreamConnector(Worker& worker, std::shared_ptr<const ProxyConfig> config, const Tenant& tenant,
                                     std::string host, std::uint16_t port, Listener& listener)
    : worker_(worker),
      config_(std::move(config)),
      tenant_(tenant),
      host_(std::move(host)),
      port_(port),
      listener_(listener) {}

UpstreamConnector::~UpstreamConnector() {
    free_upstream();
    if (timer_) event_free(timer_);
    if (addresses_) evutil_freeaddrinfo(addresses_);
}

void UpstreamConnector::start() {
    timer_ = evtimer_new(worker_.base(), &UpstreamConnector::on_timer, this);
    if (timer_ == nullptr) {
        fail(Failure::connect_failed);
        return;
    }
    const auto ip = IpAddress::parse(host_);
    if (!ip) {
        begin_lookup();
        return;
    }
    // An IP literal needs no resolver: build the one address ourselves (evdns would parse it
    // with sscanf and allocate a result list).
    literal_address_ = SocketAddress::of(*ip, port_);
    literal_info_.ai_socktype = SOCK_STREAM;
    literal_info_.ai_protocol = IPPROTO_TCP;
    literal_info_.ai_family = literal_address_.family();
    literal_info_.ai_addr = reinterpret_cast<sockaddr*>(&literal_address_.storage);
    literal_info_.ai_addrlen = literal_address_.length;
    next_ = &literal_info_;
    try_next_address();
}

void UpstreamConnector::begin_lookup() {
    if (!worker_.begin_lookup(tenant_.name)) {
        fail(Failure::lookups_busy);
        return;
    }
    lookup_counted_ = true;
    arm_timer(config_->dns_timeout);
    evutil_addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    // No AI_ADDRCONFIG: libevent implements it by probing routes to public addresses.
    const std::string port = std::to_string(port_);
    lookup_pending_ = true;
    evdns_getaddrinfo_request* req =
        evdns_getaddrinfo(worker_.dns(), host_.c_str(), port.c_str(), &hints, &UpstreamConnector::on_resolved, this);
    // The callback may already have run (numeric hosts, hosts file); then req is null. The
    // owner never deletes us from inside start(), so touching members here is safe.
    if (lookup_pending_) lookup_ = req;
}

void UpstreamConnector::on_resolved(int result, evutil_addrinfo* addresses, void* arg) {
    auto* self = static_cast<UpstreamConnector*>(arg);
    self->lookup_pending_ = false;
    self->lookup_ = nullptr;
    if (std::exchange(self->lookup_counted_, false)) self->worker_.end_lookup(self->tenant_.name);
    if (self->done_) {
        // Cancelled (owner closed): the owner may delete us once we return.
        if (addresses) evutil_freeaddrinfo(addresses);
        self->listener_.lookup_released();
        return;
    }
    evtimer_del(self->timer_);
    if (result != 0 || addresses == nullptr) {
        if (addresses) evutil_freeaddrinfo(addresses);
        spdlog::debug("dns lookup of {} failed: {}", self->host_, evutil_gai_strerror(result));
        self->worker_.shared().metrics.count_dns_failure();
        self->fail(Failure::name_not_resolved);
        return;
    }
    self->addresses_ = addresses;
    self->next_ = addresses;
    self->try_next_address();
}

bool UpstreamConnector::usable(const evutil_addrinfo& ai) {
    const auto ip = IpAddress::from_sockaddr(ai.ai_addr);
    if (!ip) return false;
    // The SSRF guard: decided on the resolved address, whatever the name or spelling was.
    if (!config_->policy->address_allowed(tenant_, *ip)) {
        any_denied_ = true;
        resolved_ip_ = ip->to_string();
        return false;
    }
    // This host itself (any port, any spelling) unless the tenant lists it as internal.
    const IpAddress& inner = ip->embedded_v4().value_or(*ip);
    const auto local = worker_.shared().local.load();
    if ((local->is_host(*ip) || local->is_host(inner)) && !tenant_.allow_internal.contains(*ip) &&
        !tenant_.allow_internal.contains(inner)) {
        any_denied_ = true;
        resolved_ip_ = ip->to_string();
        return false;
    }
    // A tunnel to our own listener would loop through the proxy and multiply connections.
    if (local->is_self(*ip, port_)) {
        any_loop_ = true;
        resolved_ip_ = ip->to_string();
        return false;
    }
    const std::optional<IpAddress>& bind = ai.ai_family == AF_INET ? config_->bind_v4 : config_->bind_v6;
    if ((config_->bind_v4 || config_->bind_v6) && !bind) return false;  // no egress address of this family
    any_allowed_ = true;
    resolved_ip_ = ip->to_string();
    return true;
}

int UpstreamConnector::open_socket(const evutil_addrinfo& ai) {
    any_attempted_ = true;
    timed_out_ = false;
    const int fd = socket(ai.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        spdlog::warn("socket() failed: {}", std::strerror(errno));
        return -1;
    }
    const std::optional<IpAddress>& bind = ai.ai_family == AF_INET ? config_->bind_v4 : config_->bind_v6;
    if (bind) {
        const SocketAddress local = SocketAddress::of(*bind, 0);
        if (::bind(fd, local.get(), local.length) != 0) {
            spdlog::error("cannot bind outgoing socket to {}: {}", bind->to_string(), std::strerror(errno));
            ::close(fd);
            return -1;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool UpstreamConnector::connect_to(const evutil_addrinfo& ai) {
    const int fd = open_socket(ai);
    if (fd < 0) return false;
    upstream_ = bufferevent_socket_new(worker_.base(), fd, BEV_OPT_CLOSE_ON_FREE);
    if (upstream_ == nullptr) {
        ::close(fd);
        return false;
    }
    bufferevent_setcb(upstream_, nullptr, nullptr, &UpstreamConnector::on_event, this);
    arm_timer(config_->connect_timeout);
    connect_started_ = std::chrono::steady_clock::now();
    if (bufferevent_socket_connect(upstream_, ai.ai_addr, static_cast<int>(ai.ai_addrlen)) != 0) {
        free_upstream();
        return false;
    }
    return true;  // BEV_EVENT_CONNECTED / ERROR or the timer follows
}

void UpstreamConnector::try_next_address() {
    free_upstream();
    while (next_ != nullptr) {
        const evutil_addrinfo& ai = *next_;
        next_ = ai.ai_next;
        if (usable(ai) && connect_to(ai)) return;
    }
    if (!any_allowed_ && any_loop_) {
        fail(Failure::loop);
    } else if (!any_allowed_ && any_denied_) {
        fail(Failure::denied_network);
    } else if (!any_attempted_) {
        fail(Failure::no_usable_address);
    } else {
        fail(timed_out_ ? Failure::connect_timeout : Failure::connect_failed);
    }
}

void UpstreamConnector::on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<UpstreamConnector*>(arg);
    if (self->done_) return;
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(self->timer_);
        self->done_ = true;
        bufferevent* connected = std::exchange(self->upstream_, nullptr);
        bufferevent_setcb(connected, nullptr, nullptr, nullptr, nullptr);
        self->listener_.upstream_connected(connected);  // may delete us: nothing after this
        return;
    }
    spdlog::debug("connect to {} port {} ({}) failed: {}", self->host_, self->port_, self->resolved_ip_,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    self->try_next_address();
}

void UpstreamConnector::on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<UpstreamConnector*>(arg);
    if (self->done_) return;
    if (self->lookup_pending_) {
        self->cancel();  // the lookup reports back later (lookup_released)
        self->listener_.upstream_failed(Failure::lookup_timeout);
        return;
    }
    // A silent address times out; the next resolved address still gets its chance.
    self->timed_out_ = true;
    self->try_next_address();
}

ConnectFailureReply connect_failure_reply(UpstreamConnector::Failure why) {
    static constexpr auto kReplies = enum_table<UpstreamConnector::Failure::lookups_busy, ConnectFailureReply>({
        {std::nullopt, 502, "destination host name could not be resolved"},
        {std::nullopt, 504, "destination host name lookup timed out"},
        {Denial::loop, 403, "destination is this proxy"},
        {Denial::network, 403, "destination address is in a denied network"},
        {std::nullopt, 502, "no usable address for the destination"},
        {std::nullopt, 504, "upstream connect timed out"},
        {std::nullopt, 502, "upstream connection failed"},
        {std::nullopt, 503, "too many destination name lookups in progress for this tenant"},
    });
    return kReplies.get(why, {std::nullopt, 502, "upstream connection failed"});
}

void UpstreamConnector::fail(Failure why) {
    cancel();
    listener_.upstream_failed(why);
}

void UpstreamConnector::cancel() {
    if (done_) return;
    done_ = true;
    if (timer_) evtimer_del(timer_);
    free_upstream();
    if (lookup_pending_ && lookup_) evdns_getaddrinfo_cancel(lookup_);
}

void UpstreamConnector::arm_timer(std::chrono::milliseconds after) { proxy::arm_timer(timer_, after); }

void UpstreamConnector::free_upstream() {
    if (upstream_) bufferevent_free(upstream_);
    upstream_ = nullptr;
}

}  // namespace dingbridge::proxy
