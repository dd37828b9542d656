#include "proxy/tunnel.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "proxy/buffered_relay.h"
#include "proxy/reply.h"
#include "proxy/request_head.h"
#include "proxy/timer.h"
#include "proxy/tls.h"
#include "proxy/worker.h"
#include "shared/log.h"

namespace dingbridge::proxy {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kChecksBusy = "too many credential checks in progress, retry shortly";

std::string endpoint(const IpAddress& ip, std::uint16_t port) {
    return ip.is_v4() ? ip.to_string() + ":" + std::to_string(port)
                      : "[" + ip.to_string() + "]:" + std::to_string(port);
}

std::string host_port(const std::string& host, std::uint16_t port) {
    if (host.empty()) return "-";
    return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                               : host + ":" + std::to_string(port);
}

long long ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

std::chrono::microseconds us_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::microseconds>(b - a);
}

// How often an established tunnel's timer asks its relay about a stalled sender's reset
// (Relay::stalled_peer_error): a quarter of idle_timeout, at most 15 s.
std::chrono::milliseconds relay_check_interval(std::chrono::milliseconds idle_timeout) {
    return std::clamp(idle_timeout / 4, std::chrono::milliseconds(1), std::chrono::milliseconds(15'000));
}

}  // namespace

Tunnel::Tunnel(Worker& worker, std::shared_ptr<const ProxyConfig> config, evutil_socket_t fd, const sockaddr* source,
               unsigned listener_index)
    : worker_(worker), config_(std::move(config)), listener_index_(listener_index) {
    accepted_at_ = Clock::now();
    last_activity_ = accepted_at_;
    if (auto ip = IpAddress::from_sockaddr(source)) source_ip_ = *ip;
    source_port_ = port_of(source);
    const auto& listener = config_->listeners[listener_index_];
    if (listener.tls_context) {
        SSL* ssl = SSL_new(listener.tls_context.get());
        if (ssl != nullptr) {
            // A client that ends with a TCP FIN and no close_notify has ended its stream (see
            // allow_dirty_shutdown in start()); OpenSSL 3 would report that as an error, and the
            // tunnel would be cut before the last bytes reached upstream.
            SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
            client_ = bufferevent_openssl_socket_new(worker_.base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                     BEV_OPT_CLOSE_ON_FREE);
            if (client_ == nullptr) SSL_free(ssl);
        }
        if (client_ == nullptr) ::close(fd);
        tls_client_ = true;
        state_ = State::handshaking;
    } else {
        client_ = bufferevent_socket_new(worker_.base(), fd, BEV_OPT_CLOSE_ON_FREE);
        if (client_ == nullptr) ::close(fd);
    }
    timer_ = evtimer_new(worker_.base(), &Tunnel::on_timer, this);
}

Tunnel::~Tunnel() {
    release_source_slot();  // deleted unclosed at exit
    if (client_) bufferevent_free(client_);
    if (timer_) event_free(timer_);
}

void Tunnel::start() {
    if (client_ == nullptr || timer_ == nullptr) {
        close(CloseReason::out_of_memory);
        return;
    }
    // TCP_NODELAY is inherited from the listening socket (server.cpp).
    bufferevent_setcb(client_, &Tunnel::on_client_read, &Tunnel::on_client_write, &Tunnel::on_client_event, this);
    // Stop reading at the head limit: a head that has not ended by then is refused with 431.
    bufferevent_setwatermark(client_, EV_READ, 0, config_->max_head_bytes + 1);
    if (tls_client_) {
        // Clients that drop TCP without close_notify end their stream; that is EOF, not an error.
        bufferevent_openssl_set_allow_dirty_shutdown(client_, 1);
        arm_timer(config_->tls_handshake_timeout);
    } else {
        arm_timer(config_->header_timeout);
    }
    // Only reading: the write event is added by libevent when output is queued (enabling
    // EV_WRITE with nothing to write would cost two epoll_ctl calls per tunnel).
    bufferevent_enable(client_, EV_READ);
}

void Tunnel::arm_timer(std::chrono::milliseconds after) { proxy::arm_timer(timer_, after); }

void Tunnel::handshake_done() {
    state_ = State::reading_head;
    if (auto subject = verified_peer_subject(bufferevent_openssl_get_ssl(client_))) client_subject_ = *subject;
    arm_timer(config_->header_timeout);
    if (evbuffer_get_length(bufferevent_get_input(client_)) > 0) handle_head();
}

void Tunnel::on_client_read(bufferevent*, void* arg) {
    auto* self = static_cast<Tunnel*>(arg);
    switch (self->state_) {
        case State::reading_head:
            self->handle_head();
            break;
        default:
            break;  // early data waits in the input buffer until the tunnel is up
    }
}

void Tunnel::on_client_write(bufferevent*, void* arg) {
    auto* self = static_cast<Tunnel*>(arg);
    if (self->state_ == State::replying) {
        if (evbuffer_get_length(bufferevent_get_output(self->client_)) == 0) self->close(CloseReason::reply_sent);
        return;
    }
}

void Tunnel::handle_head() {
    evbuffer* input = bufferevent_get_input(client_);
    const std::size_t available = evbuffer_get_length(input);
    const std::size_t window = std::min(available, config_->max_head_bytes);
    const char* data = reinterpret_cast<const char*>(evbuffer_pullup(input, static_cast<ev_ssize_t>(window)));
    // Only what came since the last read is searched: a head trickled in small pieces would
    // otherwise be searched from its start on every read, quadratic in max_head_bytes.
    const std::size_t head_len =
        data == nullptr ? std::string_view::npos : find_head_end(std::string_view(data, window), head_scanned_);
    if (head_len == std::string_view::npos) {
        head_scanned_ = static_cast<std::uint32_t>(window);
        if (available > config_->max_head_bytes) deny(Denial::head_too_large, 431, "request head too large");
        return;
    }
    const HeadResult parsed = parse_connect_head(std::string_view(data, head_len));
    evbuffer_drain(input, head_len);
    head_scanned_ = 0;
    // Reading stays enabled while the tunnel is set up synchronously (a disable/enable pair is
    // two epoll_ctl calls); error replies and the asynchronous password check disable it.
    if (parsed.error != HeadError::none) {
        if (parsed.error == HeadError::method_not_allowed)
            deny(Denial::method, 405, parsed.reason);
        else
            deny(Denial::malformed, 400, parsed.reason);
        return;
    }
    const ConnectRequest& req = parsed.request;
    host_ = req.host;
    port_ = req.port;

    // Decided under the configuration in force now, not the one at accept: a client that
    // connected before a reload removed its user (or tenant, or destination) must not get in
    // with it. Only the TLS session, already set up, keeps the accept-time context.
    config_ = worker_.config();
    SharedState& shared = worker_.shared();
    const auto& listener = config_->listeners[listener_index_];
    sent_credentials_ = req.has_authorization;
    const std::string* name = req.basic ? &req.basic->user : nullptr;
    ClientContext client;
    if (!client_subject_.empty()) client.certificate_subject = &client_subject_;
    if (!listener.tenant.empty()) client.listener_tenant = &listener.tenant;
    client.credentials_need_tls = listener.require_tls && !tls_client_;
    const Policy& policy = *config_->policy;
    AuthResult auth = policy.check(source_ip_, req, client);  // no side effects; decides nothing yet
    std::string key;
    if (auth.outcome == AuthOutcome::verify_password) {
        key = check_key(req.basic->user, req.basic->password);
        // The same credentials from this address are being checked already: their verdict is
        // this request's too. One guess is one attempt, however many connections carry it, and
        // a client opening a pool of connections with new credentials gets them all in.
        if (std::vector<Tunnel*>* waiting = worker_.waiting_for_check(key)) {
            user_ = auth.user;
            waiting->push_back(this);
            wait_for_check();
            return;
        }
    }
    // A source the tenant's networks (or every tenant's) do not hold gets 403 at once, whatever
    // the name or password: no attempt. The throttle's per-user block turned it into a delayed
    // 429 for names under attack, telling an outsider which names those are, and for a right
    // password found in the credential cache only, telling it that the password was right.
    const bool attempt = req.has_authorization && auth.outcome != AuthOutcome::source_not_allowed;
    if (attempt) {
        // Counted as in flight from here until its credentials are decided (end_auth_attempt).
        if (const int wait = shared.auth_throttle.begin_attempt(source_ip_, name, config_->auth_throttle)) {
            deny_throttled(wait);
            return;
        }
    }
    if (auth.outcome != AuthOutcome::verify_password) {
        if (attempt) {
            if (const int wait = end_auth_attempt(name, auth)) {
                deny_throttled(wait);
                return;
            }
        }
        authenticated(auth);
        return;
    }
    start_password_check(std::move(auth), req.basic->password, std::move(key));
}

std::string Tunnel::check_key(const std::string& user, const std::string& password) const {
    // The configuration (its tenants decide the verdict), the listener, the whole address (its
    // source networks), and the credentials by their digest only.
    std::string key(reinterpret_cast<const char*>(source_ip_.bytes().data()), source_ip_.bytes().size());
    const auto config = reinterpret_cast<std::uintptr_t>(config_.get());
    key.append(reinterpret_cast<const char*>(&config), sizeof config);
    key.append(reinterpret_cast<const char*>(&listener_index_), sizeof listener_index_);
    key += config_->policy->credential_cache()->digest(user, password);
    return key;
}

void Tunnel::wait_for_check() {
    bufferevent_disable(client_, EV_READ);
    verify_pending_ = true;
    state_ = State::verifying;
    // The head arrived in time; the check is our work, bounded by the queue, not the client's.
    // This only guards against a check that never reports back.
    arm_timer(std::chrono::seconds(60));
}

// The slow check runs on the verification pool; the event loop carries on with other tunnels.
// When the pool is saturated the client is told at once, never queued unboundedly.
void Tunnel::start_password_check(AuthResult pending, std::string password, std::string key) {
    user_ = pending.user;
    SharedState& shared = worker_.shared();
    Worker* worker = &worker_;
    std::shared_ptr<const ProxyConfig> config = config_;  // keeps the policy (and its users) alive
    // One copy of the password, wiped when the job goes, whether it ran, was dropped from the
    // queue for another tenant's check, or was cleared at shutdown.
    std::shared_ptr<std::string> secret(new std::string(std::move(password)), [](std::string* p) {
        OPENSSL_cleanse(p->data(), p->size());
        delete p;
    });
    auto job = [worker, config, tunnel = this, pending, secret = std::move(secret), key]() mutable {
        const bool ok = config->policy->verify_password(pending, *secret);
        worker->post([tunnel, pending = std::move(pending), ok, key = std::move(key)]() mutable {
            tunnel->password_checked(std::move(pending), ok, key);
        });
    };
    // A check dropped from the queue for another tenant's (VerifierPool) is answered like one
    // refused at once. The tunnel waits for one of the two reports either way (verify_pending_).
    auto evicted = [worker, tunnel = this, key]() { worker->post([tunnel, key] { tunnel->check_evicted(key); }); };
    // The tenant whose networks the client comes from, not the one its user name belongs to:
    // the bucket must not tell a flood which names exist.
    const std::string_view bucket =
        pending.check_share != nullptr ? std::string_view(pending.check_share->name) : std::string_view();
    if (!shared.verifier || !shared.verifier->submit(bucket, std::move(job), std::move(evicted))) {
        (void)end_auth_attempt(&user_, pending);  // no verdict (verify_password): nothing to refuse
        deny(Denial::auth_busy, 503, kChecksBusy, 1);
        return;
    }
    worker_.begin_check(key);
    wait_for_check();
}

void Tunnel::password_checked(AuthResult pending, bool ok, const std::string& key) {
    const std::string name = pending.user;  // the Basic user name its attempt began with
    AuthResult auth = config_->policy->finish_verification(source_ip_, std::move(pending), ok);
    // The attempt ends whatever became of the client: its failure counts all the same.
    const int wait = end_auth_attempt(&name, auth);
    for (Tunnel* waited : worker_.end_check(key)) waited->check_done(auth, wait);
    check_done(auth, wait);
}

void Tunnel::check_evicted(const std::string& key) {
    AuthResult unchecked;
    unchecked.outcome = AuthOutcome::verify_password;  // no verdict: nothing to count
    (void)end_auth_attempt(&user_, unchecked);
    for (Tunnel* waited : worker_.end_check(key)) waited->check_done(unchecked, 0);
    check_done(unchecked, 0);
}

void Tunnel::check_done(const AuthResult& auth, int wait) {
    verify_pending_ = false;
    if (state_ != State::verifying) {
        // Closed (client gone, timeout) while the check ran: the tunnel may be deleted now.
        if (state_ == State::closed) worker_.retire(this);
        return;
    }
    state_ = State::reading_head;
    if (wait > 0) {
        deny_throttled(wait);  // blocked while the check ran: even a right password is refused
        return;
    }
    if (auth.outcome == AuthOutcome::verify_password) {  // dropped unchecked (check_evicted)
        deny(Denial::auth_busy, 503, kChecksBusy, 1);
        return;
    }
    authenticated(auth);
}

int Tunnel::end_auth_attempt(const std::string* name, const AuthResult& auth) {
    using Verdict = AuthThrottle::Verdict;
    const Verdict verdict = auth.outcome == AuthOutcome::bad_credentials          ? Verdict::failed
                            : auth.outcome == AuthOutcome::ok && auth.by_password ? Verdict::succeeded
                                                                                  : Verdict::none;
    return worker_.shared().auth_throttle.end_attempt(source_ip_, name, verdict, config_->auth_throttle);
}

void Tunnel::authenticated(const AuthResult& auth) {
    SharedState& shared = worker_.shared();
    user_ = auth.user;
    tenant_ = auth.outcome == AuthOutcome::bad_credentials ? nullptr : auth.tenant;
    switch (auth.outcome) {
        case AuthOutcome::need_credentials:
            deny(Denial::auth, 407, "proxy authentication required");
            return;
        case AuthOutcome::bad_credentials:
            shared.metrics.count_auth_failure();  // the throttle counted it (end_auth_attempt)
            deny(Denial::auth, 407, "invalid credentials");
            return;
        case AuthOutcome::tls_required:
            deny(Denial::tls_required, 403, "credentials are accepted only over TLS on this listener");
            return;
        case AuthOutcome::source_not_allowed:
            deny(Denial::source, 403, "source address not allowed for this tenant");
            return;
        case AuthOutcome::verify_password:
            close(CloseReason::internal_error);
            return;
        case AuthOutcome::ok:
            break;
    }
    if (!Policy::destination_allowed(*tenant_, host_, port_)) {
        deny(Denial::destination, 403, "destination not allowed");
        return;
    }
    if (!admit()) return;
    // Keep reading (bounded by the watermark) so that a client FIN sent with early data is seen.
    bufferevent_setwatermark(client_, EV_READ, 0, config_->buffer_size);
    bufferevent_enable(client_, EV_READ);
    begin_connect();
}

bool Tunnel::admit() {
    TenantRuntime& rt = worker_.tenant_runtime(tenant_->name);
    if (tenant_->connect_rate > 0) {
        if (const int wait = rt.connect_rate.take(tenant_->connect_rate, tenant_->connect_burst)) {
            deny(Denial::rate_limit, 429, "tenant connect rate exceeded", wait);
            return false;
        }
    }
    const std::uint64_t now_active = ++rt.active;
    if (tenant_->max_tunnels != 0 && now_active > tenant_->max_tunnels) {
        --rt.active;
        deny(Denial::tunnel_limit, 429, "tenant tunnel limit reached", 1);
        return false;
    }
    runtime_ = &rt;  // from here on this connection counts as one of the tenant's tunnels
    release_source_slot();
    return true;
}

void Tunnel::begin_connect() {
    evtimer_del(timer_);  // the connector has its own lookup and connect deadlines
    state_ = State::connecting;
    UpstreamConnector::Listener& listener = *this;
    connector_ = std::make_unique<UpstreamConnector>(worker_, config_, *tenant_, host_, port_, listener);
    connector_->start();
}

void Tunnel::upstream_failed(UpstreamConnector::Failure why) {
    resolved_ip_ = connector_->resolved_ip();
    const ConnectFailureReply reply = connect_failure_reply(why);
    if (reply.denial)
        deny(*reply.denial, reply.status, reply.reason);
    else
        reply_error(reply.status, reply.reason);
}

void Tunnel::lookup_released() { worker_.retire(this); }

void Tunnel::upstream_connected(bufferevent* upstream) {
    resolved_ip_ = connector_->resolved_ip();
    connect_started_ = connector_->connect_started();
    connector_.reset();  // called from its last callback; it touches nothing after
    state_ = State::relaying;
    established_at_ = Clock::now();
    last_activity_ = established_at_;
    Metrics& metrics = worker_.shared().metrics;
    metrics.connect_latency.observe(us_between(connect_started_, established_at_));
    metrics.setup_latency.observe(us_between(accepted_at_, established_at_));
    status_ = 200;
    arm_timer(relay_check_interval(config_->idle_timeout));
    if (config_->relay != RelayMode::buffered && !tls_client_ && !client_eof_ &&
        evbuffer_get_length(bufferevent_get_input(client_)) == 0 && start_socket_relay(upstream)) {
        return;
    }
    Relay::Listener& listener = *this;
    auto buffered = std::make_unique<BufferedRelay>(std::exchange(client_, nullptr), upstream, tls_client_,
                                                    config_->buffer_size, listener);
    BufferedRelay& relay = *buffered;
    relay_ = std::move(buffered);
    relay.start(client_eof_);
}

bool Tunnel::start_socket_relay(bufferevent* upstream) {
    static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";
    const int client_fd = bufferevent_getfd(client_);
    const int upstream_fd = bufferevent_getfd(upstream);
    // The client's send buffer is empty at this point, so the short reply goes out in one call;
    // anything else (EAGAIN, partial) falls back to the buffered relay before touching state.
    if (::send(client_fd, kEstablished.data(), kEstablished.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        static_cast<ssize_t>(kEstablished.size())) {
        return false;
    }
    SocketRelay::Listener& listener = *this;
    StagePool& pool = worker_.stages();
    StageKind stages = StageKind::buffer;
    if (config_->relay == RelayMode::splice) {
        stages = StageKind::pipe;  // its pipes are not bounded by the allowance: its budget counts 2 a tunnel
    } else if (config_->relay == RelayMode::automatic) {
        stages = StageKind::pipe_when_bulk;
    }
    // Both as the running configuration has them (a reload may have changed the relay).
    pool.set_max_pipes_lent(config_->pipes_lent);
    pool.set_keep_pipes(config_->pipe_pool_keep);
    auto socket_relay = std::make_unique<SocketRelay>(worker_.base(), pool, stages, client_fd, upstream_fd, listener,
                                                      config_->relay_send_thread ? &worker_.send_offload() : nullptr);
    // The relay's read events go in before the bufferevents' come out: the client socket stays
    // registered with epoll throughout (no DEL + ADD pair per tunnel).
    const bool started = socket_relay->start();
    relay_ = std::move(socket_relay);
    for (bufferevent* bev : {std::exchange(client_, nullptr), upstream}) {
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        bufferevent_setfd(bev, -1);  // detach: the relay owns the descriptor now
        bufferevent_free(bev);
    }
    if (!started) close(CloseReason::out_of_memory);
    return true;  // handled (relaying, or closed)
}

void Tunnel::relay_progress(bool upstream_bound, std::size_t bytes) {
    (upstream_bound ? bytes_up_ : bytes_down_) += bytes;
    if (runtime_) (upstream_bound ? runtime_->bytes_up : runtime_->bytes_down) += bytes;
    last_activity_ = Clock::now();
}

void Tunnel::relay_finished(CloseReason reason) { close(reason); }

void Tunnel::on_client_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<Tunnel*>(arg);
    if (what & BEV_EVENT_CONNECTED) {
        if (self->state_ == State::handshaking) self->handshake_done();
        return;
    }
    if (what & BEV_EVENT_EOF) {
        switch (self->state_) {
            case State::handshaking:
            case State::reading_head:
                self->close(CloseReason::client_gone_before_head);
                return;
            case State::verifying:
                self->close(CloseReason::client_gone_during_check);
                return;
            case State::delaying:
                self->close(CloseReason::client_gone);
                return;
            case State::connecting:
                self->client_eof_ = true;  // forward after connecting; the FIN is remembered
                return;
            case State::relaying:  // the relay has its own callbacks
                return;
            case State::replying:
                self->close(CloseReason::reply_sent);
                return;
            case State::closed:
                return;
        }
    }
    if (what & BEV_EVENT_ERROR) {
        if (self->state_ == State::handshaking) {
            self->worker_.shared().metrics.count_denial(Denial::tls_handshake);
            self->close(CloseReason::tls_handshake_failed);
            return;
        }
        self->close(self->state_ == State::relaying ? CloseReason::client_error : CloseReason::client_gone);
    }
}

void Tunnel::on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Tunnel*>(arg);
    switch (self->state_) {
        case State::handshaking:
            self->close(CloseReason::tls_handshake_timeout);
            return;
        case State::reading_head:
            self->deny(Denial::header_timeout, 408, "request head not received in time");
            return;
        case State::verifying:
            self->deny(Denial::auth_busy, 503, "credential check did not finish in time", 1);
            return;
        case State::delaying:
            self->end_reply_delay();
            return;
        case State::connecting:
            return;  // the connector keeps its own deadlines
        case State::relaying: {
            // A sender the relay stopped reading (its receiver takes nothing) may have reset its
            // connection: that ends the tunnel now, not at idle_timeout.
            if (self->relay_) {
                self->relay_->tick();
                if (self->state_ == State::closed) return;  // the tick ended it
                if (const auto failed = self->relay_->stalled_peer_error()) {
                    self->close(*failed);
                    return;
                }
            }
            const auto now = Clock::now();
            // The queue toward a receiver changed since the last check (it took bytes, maybe the
            // last ones): a slow reader draining is activity, seen to within one check. (A
            // receiver that takes nothing for a whole idle_timeout is idle.) Sampled at every
            // check, not only when the timeout is reached: compared there with the sample of the
            // previous expiry (or none), any queue looked like progress and every idle tunnel
            // lived for twice idle_timeout.
            const std::size_t waiting = self->relay_ ? self->relay_->queued() : 0;
            if (waiting != self->last_waiting_) {
                if (self->last_waiting_ != kNoSample) self->last_activity_ = now;
                self->last_waiting_ = waiting;
            }
            const auto idle = now - self->last_activity_;
            const auto check = relay_check_interval(self->config_->idle_timeout);
            if (idle >= self->config_->idle_timeout) {
                self->close(CloseReason::idle_timeout);
            } else {
                self->arm_timer(std::min(
                    check, std::chrono::duration_cast<std::chrono::milliseconds>(self->config_->idle_timeout - idle) +
                               std::chrono::milliseconds(1)));
            }
            return;
        }
        case State::replying:
            self->close(CloseReason::reply_sent);  // the client never read its error reply
            return;
        case State::closed:
            return;
    }
}

void Tunnel::deny(Denial why, int status, const char* reason, int retry_after) {
    worker_.shared().metrics.count_denial(why);
    if (tenant_ != nullptr) worker_.tenant_runtime(tenant_->name).denials[static_cast<int>(why)]++;
    reply_error(status, reason, retry_after);
}

// A client that keeps guessing from a blocked source would otherwise get its 429 within a round
// trip and come straight back: thousands of connections a second, each accepted, read and
// answered on the workers' cores. Holding the answer for reply_delay (reading off, so the held
// connection costs no CPU) slows such a loop to one attempt per delay per connection. The number
// held is bounded (delayed_reply_limit) so that a client opening many connections cannot crowd
// out tenants; beyond it the 429 goes out at once, as without the delay.
void Tunnel::deny_throttled(int retry_after) {
    std::atomic<std::uint64_t>& held = worker_.shared().metrics.delayed_replies();
    const auto delay = config_->throttled_reply_delay;
    if (delay.count() > 0 && !worker_.shared().draining) {  // a draining proxy answers at once
        if (held.fetch_add(1, std::memory_order_relaxed) < delayed_reply_limit(*config_)) {
            delayed_retry_after_ = static_cast<std::uint16_t>(std::clamp(retry_after, 1, 65535));
            state_ = State::delaying;
            bufferevent_disable(client_, EV_READ);
            arm_timer(delay);
            return;
        }
        held.fetch_sub(1, std::memory_order_relaxed);
    }
    deny(Denial::auth_throttled, 429, "too many failed authentications", retry_after);
}

void Tunnel::end_reply_delay() {
    if (state_ != State::delaying) return;
    worker_.shared().metrics.delayed_replies().fetch_sub(1, std::memory_order_relaxed);
    deny(Denial::auth_throttled, 429, "too many failed authentications", delayed_retry_after_);
}

void Tunnel::reply_error(int status, const char* reason, int retry_after) {
    status_ = status;
    reason_ = reason;
    if (connector_) connector_->cancel();
    // Fixed texts only: nothing the client sent is ever reflected.
    const std::string head = error_reply(status, reason, config_->realm, retry_after);
    state_ = State::replying;
    bufferevent_disable(client_, EV_READ);
    bufferevent_write(client_, head.data(), head.size());
    // A client that never reads its error must not pin the connection.
    arm_timer(std::chrono::seconds(5));
}

void Tunnel::close(CloseReason why) {
    if (state_ == State::closed) return;
    // An error reply keeps its own reason; otherwise the first cause, and for an established
    // tunnel whatever ended it.
    if (why != CloseReason::reply_sent) {
        const char* text = close_reason_text(why);
        if (status_ == 0 || reason_[0] == '\0') reason_ = text;
        if (status_ == 200 && why != CloseReason::completed) reason_ = text;
    }
    if (state_ == State::delaying)  // cut while delaying (client gone, shutdown)
        worker_.shared().metrics.delayed_replies().fetch_sub(1, std::memory_order_relaxed);
    state_ = State::closed;
    if (connector_) connector_->cancel();  // a pending lookup still reports back (lookup_released)
    if (relay_) relay_->stop();            // deleted with the tunnel, not inside its own callback
    if (client_) {
        if (tls_client_) send_close_notify(client_);  // after an error reply
        bufferevent_free(client_);
        client_ = nullptr;
    }
    evtimer_del(timer_);
    if (runtime_) --runtime_->active;
    release_source_slot();
    write_access_log();
    worker_.retire(this);
}

void Tunnel::release_source_slot() {
    if (!std::exchange(holds_source_slot_, false)) return;
    worker_.shared().unauthorised.release(source_ip_);
}

void Tunnel::write_access_log() {
    const auto now = Clock::now();
    const long long setup_ms =
        established_at_.time_since_epoch().count() ? ms_between(accepted_at_, established_at_) : -1;
    const long long total_ms = ms_between(accepted_at_, now);
    const int status = status_ == 0 ? 499 : status_;  // 499: closed before any reply (nginx's convention)
    const std::string tenant = tenant_ ? tenant_->name : "";
    Metrics& metrics = worker_.shared().metrics;
    metrics.count_connection(runtime_ ? *runtime_ : worker_.tenant_runtime(tenant), status);
    const std::string source = endpoint(source_ip_, source_port_);
    const std::string destination = host_port(host_, port_);
    const std::string timestamp = Worker::timestamp();
    const AccessRecord record{.time = timestamp,
                              .tenant = tenant,
                              .user = user_,
                              .source = source,
                              .tls = tls_client_,
                              .destination = destination,
                              .resolved_ip = resolved_ip_,
                              .status = status,
                              .bytes_up = bytes_up_,
                              .bytes_down = bytes_down_,
                              .setup_ms = setup_ms,
                              .total_ms = total_ms,
                              .reason = reason_};
    worker_.access_log().info("{}", access_log_line(record, config_->access_log_format == "json"));
}

}  // namespace dingbridge::proxy
