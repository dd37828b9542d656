#pragma once
// Tenant and destination policy of dingbridge-proxy: who may open a tunnel, to where.
//
// Pure decisions over values: `authenticate` picks the tenant of a request (Basic credentials
// or, for tenants that allow it, the source network alone); `destination_allowed` matches
// host:port against the tenant's allow-list; `address_allowed` checks a *resolved* address
// against the deny networks (and the addresses embedded in IPv6 transition forms) unless the
// tenant explicitly allows that network. A Policy is immutable once built and shared between
// worker threads; the credential cache inside is internally synchronized.

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "proxy/request_head.h"
#include "shared/net.h"
#include "shared/password.h"

namespace dingbridge::proxy {

// One `host:port` allow-list entry: `api.dingtalk.com:443`, `*.dingtalk.com:443` (subdomains,
// not the apex), `*:443`, `oapi.dingtalk.com:*`, `127.0.0.1:8000-8999`, `[::1]:443`.
class DestinationRule {
public:
    static std::optional<DestinationRule> parse(const std::string& text, std::string* error);
    bool matches(const std::string& host, std::uint16_t port) const;  // host: lowercase, no brackets
    const std::string& text() const { return text_; }

private:
    std::string text_;
    std::string host_;       // exact host, or the suffix after "*." (with a leading dot)
    bool wildcard_ = false;  // "*.suffix"
    bool any_host_ = false;  // "*"
    std::uint16_t port_lo_ = 0, port_hi_ = 0;
};

struct TenantUser {
    std::string name;
    PasswordHash hash;
};

struct Tenant {
    std::string name;
    std::vector<TenantUser> users;
    bool allow_without_credentials = false;  // identified by source network alone
    NetworkSet source_networks;              // where its clients may connect from
    std::vector<DestinationRule> destinations;
    NetworkSet allow_internal;                     // deny-network exceptions (e.g. loopback in tests)
    std::vector<std::string> client_certificates;  // TLS client certificate subjects (RFC 2253)
    unsigned max_tunnels = 0;                      // concurrent tunnels; 0 = unlimited
    double connect_rate = 0;                       // new tunnels per second; 0 = unlimited
    double connect_burst = 0;
};

// What the listener and the TLS layer already know about a client.
struct ClientContext {
    const std::string* certificate_subject = nullptr;  // verified client certificate, if any
    const std::string* listener_tenant = nullptr;      // the listener is dedicated to this tenant
    bool credentials_need_tls = false;                 // plain listener with require_tls
};

// The built-in deny networks: loopback, RFC 1918, link-local (incl. 169.254.169.254), CGNAT,
// unique-local, site-local, multicast, unspecified, reserved/broadcast, benchmarking, IETF
// protocol assignments, NAT64/6to4 forms are checked via their embedded IPv4.
NetworkSet default_deny_networks();

// verify_password: the credentials are not in the cache of verified ones; the slow check
// (`verify_password`) must run, off the event loop, before `finish_verification` decides.
enum class AuthOutcome { ok, need_credentials, bad_credentials, source_not_allowed, tls_required, verify_password };

struct AuthResult {
    AuthOutcome outcome = AuthOutcome::need_credentials;
    const Tenant* tenant = nullptr;
    std::string user;  // empty for credential-less tenants
    // verify_password: the configured user whose hash to check; nullptr = unknown user name
    // (a dummy check of the same cost runs, so timing doesn't reveal which names exist).
    const TenantUser* pending_user = nullptr;
    // verify_password: whose share of the password checks this one uses (source_tenant).
    const Tenant* check_share = nullptr;
    // ok by the user's Basic password (verified, or cached from a verification): the login that
    // makes its source known to the throttle (AuthThrottle::record_success).
    bool by_password = false;
};

// Remembers HMAC(key, tenant, user, the user's stored hash, password) of credentials that
// verified, so that a client reconnecting with the same credentials costs a hash lookup instead
// of an scrypt. Only successes are cached, never a plaintext; the HMAC key is random per
// process. A reload hands the running cache to the new Policy (cached logins stay fast through
// logrotate's SIGHUP during a wrong-password flood, when a check may get 503): the stored hash
// in the key makes a changed password miss, and a removed user is never looked up. Bounded: the
// oldest entries are evicted first. Thread-safe.
class CredentialCache {
public:
    CredentialCache();
    bool contains(const std::string& user, const std::string& password) const;
    void insert(const std::string& user, const std::string& password);
    // A keyed digest (HMAC-SHA-256 under this cache's random key) of the pair: tells equal
    // credentials apart from different ones without keeping the password.
    std::string digest(const std::string& user, const std::string& password) const;

private:
    std::string key_;
    mutable std::mutex mutex_;
    std::unordered_set<std::string> entries_;
    std::deque<std::string> order_;  // insertion order, for eviction
};

class Policy {
public:
    // `cache`: the running configuration's on a reload, else a new one.
    Policy(std::vector<Tenant> tenants, NetworkSet deny_networks,
           std::shared_ptr<CredentialCache> cache = std::make_shared<CredentialCache>());

    // Everything in one call, including the slow password check (tools and tests).
    AuthResult authenticate(const IpAddress& source, const ConnectRequest& request,
                            const ClientContext& client = ClientContext{}) const;
    // The fast part: certificates, listeners, cached credentials. Never runs scrypt; returns
    // verify_password when the password must be checked.
    AuthResult check(const IpAddress& source, const ConnectRequest& request,
                     const ClientContext& client = ClientContext{}) const;
    // The slow part (scrypt), for a verification thread: true when `password` is right for
    // `pending.pending_user`; a success is remembered in the credential cache. Thread-safe.
    bool verify_password(const AuthResult& pending, const std::string& password) const;
    // The outcome once `verify_password` answered (source networks checked on success).
    AuthResult finish_verification(const IpAddress& source, AuthResult pending, bool verified) const;
    const Tenant* find_tenant(const std::string& name) const;
    // The tenant whose source_networks hold `source` most specifically (the longest matching
    // prefix; the first listed among equals): whose share of the password checks a login from
    // there uses. nullptr: no tenant accepts the address.
    const Tenant* source_tenant(const IpAddress& source) const;
    static bool destination_allowed(const Tenant& tenant, const std::string& host, std::uint16_t port);
    bool address_allowed(const Tenant& tenant, const IpAddress& address) const;

    const std::vector<Tenant>& tenants() const { return tenants_; }
    const NetworkSet& deny_networks() const { return deny_; }
    const std::shared_ptr<CredentialCache>& credential_cache() const { return cache_; }
    // The parameters of the check run for unknown user names: the costliest of the configured
    // hashes (the default when there are none), so that no configured name answers slower than
    // an unknown one. A name with cheaper parameters still answers faster (main warns at load).
    const ScryptParams& decoy_params() const { return decoy_.params(); }

private:
    std::vector<Tenant> tenants_;
    NetworkSet deny_;
    PasswordHash decoy_;
    std::shared_ptr<CredentialCache> cache_;
};

}  // namespace dingbridge::proxy
