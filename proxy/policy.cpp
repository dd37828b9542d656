#include "proxy/policy.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "shared/ascii.h"

namespace dingbridge::proxy {

namespace {

constexpr std::size_t kCredentialCacheMax = 4096;

const char* const kDefaultDeny[] = {
    "0.0.0.0/8",        // "this network", unspecified
    "10.0.0.0/8",       // RFC 1918
    "100.64.0.0/10",    // CGNAT (RFC 6598)
    "127.0.0.0/8",      // loopback
    "169.254.0.0/16",   // link-local, cloud metadata 169.254.169.254
    "172.16.0.0/12",    // RFC 1918
    "192.0.0.0/24",     // IETF protocol assignments
    "192.0.2.0/24",     // TEST-NET-1
    "192.88.99.0/24",   // 6to4 relay anycast
    "192.168.0.0/16",   // RFC 1918
    "198.18.0.0/15",    // benchmarking
    "198.51.100.0/24",  // TEST-NET-2
    "203.0.113.0/24",   // TEST-NET-3
    "224.0.0.0/4",      // multicast
    "240.0.0.0/4",      // reserved, broadcast
    "::/128",           // unspecified
    "::1/128",          // loopback
    "fc00::/7",         // unique-local
    "fe80::/10",        // link-local
    "fec0::/10",        // site-local (deprecated, still routed by some stacks)
    "ff00::/8",         // multicast
    "100::/64",         // discard-only
    "2001:db8::/32",    // documentation
};

}  // namespace

std::optional<DestinationRule> DestinationRule::parse(const std::string& text, std::string* error) {
    auto bad = [&](const std::string& why) {
        if (error) *error = why;
        return std::nullopt;
    };
    DestinationRule rule;
    rule.text_ = text;
    std::string host;
    std::string port;
    if (!text.empty() && text[0] == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return bad("expected [ipv6]:port");
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const std::size_t colon = text.rfind(':');
        if (colon == std::string::npos) return bad("expected host:port (use host:* for any port)");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    host = ascii_lower(std::move(host));
    if (host == "*") {
        rule.any_host_ = true;
    } else if (host.rfind("*.", 0) == 0) {
        rule.wildcard_ = true;
        rule.host_ = host.substr(1);  // ".dingtalk.com"
        if (!is_valid_hostname(host.substr(2)) && !IpAddress::parse(host.substr(2)))
            return bad("invalid domain after '*.'");
    } else if (auto ip = IpAddress::parse(host)) {
        rule.host_ = ip->to_string();
    } else {
        if (!host.empty() && host.back() == '.') host.pop_back();
        if (!is_valid_hostname(host)) return bad("invalid host '" + host + "'");
        rule.host_ = host;
    }
    auto parse_port = [](const std::string& s, std::uint16_t& out) {
        if (s.empty() || s.size() > 5) return false;
        unsigned v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return false;
            v = v * 10 + static_cast<unsigned>(c - '0');
        }
        if (v == 0 || v > 65535) return false;
        out = static_cast<std::uint16_t>(v);
        return true;
    };
    if (port == "*") {
        rule.port_lo_ = 1;
        rule.port_hi_ = 65535;
    } else if (const std::size_t dash = port.find('-'); dash != std::string::npos) {
        if (!parse_port(port.substr(0, dash), rule.port_lo_) || !parse_port(port.substr(dash + 1), rule.port_hi_) ||
            rule.port_lo_ > rule.port_hi_) {
            return bad("invalid port range '" + port + "'");
        }
    } else {
        if (!parse_port(port, rule.port_lo_)) return bad("invalid port '" + port + "' (1-65535, a range a-b, or *)");
        rule.port_hi_ = rule.port_lo_;
    }
    return rule;
}

bool DestinationRule::matches(const std::string& host, std::uint16_t port) const {
    if (port < port_lo_ || port > port_hi_) return false;
    if (any_host_) return true;
    if (wildcard_) {
        return host.size() > host_.size() && host.compare(host.size() - host_.size(), host_.size(), host_) == 0;
    }
    return host == host_;
}

NetworkSet default_deny_networks() {
    NetworkSet set;
    for (const char* text : kDefaultDeny) set.add(*Cidr::parse(text));
    return set;
}

CredentialCache::CredentialCache() : key_(32, '\0') {
    RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size()));
}

std::string CredentialCache::digest(const std::string& user, const std::string& password) const {
    std::string message = user;
    message.push_back('\0');
    message += password;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
    OPENSSL_cleanse(message.data(), message.size());
    return std::string(reinterpret_cast<char*>(out), len);
}

bool CredentialCache::contains(const std::string& user, const std::string& password) const {
    const std::string d = digest(user, password);
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.count(d) != 0;
}

void CredentialCache::insert(const std::string& user, const std::string& password) {
    const std::string d = digest(user, password);
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.count(d) != 0) return;
    if (order_.size() >= kCredentialCacheMax) {
        entries_.erase(order_.front());  // the oldest verified credentials go first
        order_.pop_front();
    }
    entries_.insert(d);
    order_.push_back(d);
}

namespace {

ScryptParams costliest_params(const std::vector<Tenant>& tenants) {
    std::optional<ScryptParams> costliest;
    for (const auto& t : tenants)
        for (const auto& u : t.users)
            if (!costliest || u.hash.params().cost() > costliest->cost()) costliest = u.hash.params();
    return costliest.value_or(ScryptParams{});
}

}  // namespace

Policy::Policy(std::vector<Tenant> tenants, NetworkSet deny_networks, std::shared_ptr<CredentialCache> cache)
    : tenants_(std::move(tenants)),
      deny_(std::move(deny_networks)),
      decoy_(PasswordHash::decoy(costliest_params(tenants_))),
      cache_(std::move(cache)) {}

const Tenant* Policy::find_tenant(const std::string& name) const {
    for (const auto& t : tenants_)
        if (t.name == name) return &t;
    return nullptr;
}

AuthResult Policy::authenticate(const IpAddress& source, const ConnectRequest& request,
                                const ClientContext& client) const {
    AuthResult result = check(source, request, client);
    if (result.outcome != AuthOutcome::verify_password) return result;
    const bool ok = verify_password(result, request.basic->password);
    return finish_verification(source, std::move(result), ok);
}

namespace {

// The stored hash is part of the key: after a reload, a password changed in the file misses.
std::string cache_user_of(const Tenant& tenant, const TenantUser& user) {
    return tenant.name + "\n" + user.name + "\n" + user.hash.to_string();
}

}  // namespace

AuthResult Policy::check(const IpAddress& source, const ConnectRequest& request, const ClientContext& client) const {
    AuthResult result;
    auto by_tenant = [&](const Tenant* t) {
        result.tenant = t;
        result.outcome = t->source_networks.contains(source) ? AuthOutcome::ok : AuthOutcome::source_not_allowed;
        return result;
    };
    // A verified client certificate names its tenant; so does a listener dedicated to one.
    if (client.certificate_subject != nullptr) {
        for (const auto& t : tenants_) {
            // On a listener dedicated to a tenant, a certificate names that tenant only: the
            // listener's client CA (another tenant's, say) can issue any subject.
            if (client.listener_tenant != nullptr && t.name != *client.listener_tenant) continue;
            for (const auto& subject : t.client_certificates) {
                if (subject == *client.certificate_subject) {
                    result.user = "cert:" + subject;
                    return by_tenant(&t);
                }
            }
        }
    }
    if (client.listener_tenant != nullptr) {
        if (const Tenant* t = find_tenant(*client.listener_tenant)) return by_tenant(t);
    }
    if (request.has_authorization && client.credentials_need_tls) {
        result.outcome = AuthOutcome::tls_required;
        return result;
    }
    if (request.basic) {
        const Tenant* tenant = nullptr;
        const TenantUser* user = nullptr;
        for (const auto& t : tenants_) {
            for (const auto& u : t.users) {
                if (u.name == request.basic->user) {
                    tenant = &t;
                    user = &u;
                }
            }
        }
        result.user = request.basic->user;
        result.tenant = tenant;
        result.pending_user = user;
        if (user != nullptr && cache_->contains(cache_user_of(*tenant, *user), request.basic->password)) {
            result.by_password = true;
            return by_tenant(tenant);
        }
        // No tenant accepts this address, whoever the user is: refused before any password work,
        // so a flood from outside every tenant's networks costs no scrypt (and the answer, which
        // depends on the address alone, tells nothing about names or passwords). Cached logins
        // above never get here: their tenant's own networks decide.
        result.check_share = source_tenant(source);
        if (result.check_share == nullptr) {
            // Nothing was checked: the name is only a claim, so the refusal is nobody's (else
            // anyone could write "bob tried from outside" into bob's tenant's log and metrics,
            // and the log would tell which names exist).
            result.tenant = nullptr;
            result.pending_user = nullptr;
            result.outcome = AuthOutcome::source_not_allowed;
            return result;
        }
        result.outcome = AuthOutcome::verify_password;
        return result;
    }
    if (request.has_authorization) {
        // A Proxy-Authorization we cannot use (not Basic, bad base64) is a failed login.
        result.outcome = AuthOutcome::bad_credentials;
        return result;
    }
    for (const auto& t : tenants_) {
        if (t.allow_without_credentials && t.source_networks.contains(source)) {
            result.tenant = &t;
            result.outcome = AuthOutcome::ok;
            return result;
        }
    }
    result.outcome = AuthOutcome::need_credentials;
    return result;
}

const Tenant* Policy::source_tenant(const IpAddress& source) const {
    const Tenant* best = nullptr;
    int longest = -1;
    for (const auto& t : tenants_) {
        const int match = t.source_networks.longest_match(source);
        if (match > longest) {
            best = &t;
            longest = match;
        }
    }
    return best;
}

bool Policy::verify_password(const AuthResult& pending, const std::string& password) const {
    if (pending.pending_user == nullptr || pending.tenant == nullptr) {
        // Same work as a real check, so response time doesn't reveal which user names exist.
        (void)decoy_.verify(password);
        return false;
    }
    if (!pending.pending_user->hash.verify(password)) return false;
    cache_->insert(cache_user_of(*pending.tenant, *pending.pending_user), password);
    return true;
}

AuthResult Policy::finish_verification(const IpAddress& source, AuthResult pending, bool verified) const {
    pending.pending_user = nullptr;
    if (!verified || pending.tenant == nullptr) {
        pending.outcome = AuthOutcome::bad_credentials;
        pending.tenant = nullptr;
        return pending;
    }
    pending.by_password = true;
    pending.outcome =
        pending.tenant->source_networks.contains(source) ? AuthOutcome::ok : AuthOutcome::source_not_allowed;
    return pending;
}

bool Policy::destination_allowed(const Tenant& tenant, const std::string& host, std::uint16_t port) {
    for (const auto& rule : tenant.destinations)
        if (rule.matches(host, port)) return true;
    return false;
}

bool Policy::address_allowed(const Tenant& tenant, const IpAddress& address) const {
    // Linux connects an unspecified destination (0.0.0.0, ::, or a form embedding 0.0.0.0) to this
    // host itself, which the loop guard knows only by its own addresses: never a destination,
    // whatever allow_internal_networks or a custom deny list says.
    static const IpAddress any_v4 = *IpAddress::parse("0.0.0.0");
    if (address == any_v4 || address.embedded_v4() == any_v4) return false;
    if (tenant.allow_internal.contains(address)) return true;
    if (deny_.contains(address)) return false;
    // A local NAT64 may use any RFC 6052 layout: one whose reading is internal is refused.
    for (const IpAddress& reading : address.local_nat64_readings())
        if (!tenant.allow_internal.contains(reading) && deny_.contains(reading)) return false;
    if (auto inner = address.embedded_v4()) {
        if (tenant.allow_internal.contains(*inner)) return true;
        if (deny_.contains(*inner)) return false;
    }
    return true;
}

}  // namespace dingbridge::proxy
