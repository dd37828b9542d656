#include "proxy/policy.h"

#include <boost/test/unit_test.hpp>

#include "proxy/request_head.h"
#include "tests/unit/proxy/printers.h"

using namespace dingbridge;
using namespace dingbridge::proxy;

namespace {

DestinationRule rule(const std::string& s) {
    std::string error;
    auto r = DestinationRule::parse(s, &error);
    BOOST_REQUIRE_MESSAGE(r, s + ": " + error);
    return *r;
}

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

Tenant tenant_with(const std::vector<std::string>& dests) {
    Tenant t;
    t.name = "t";
    for (const auto& d : dests) t.destinations.push_back(rule(d));
    t.source_networks.add(*Cidr::parse("0.0.0.0/0"));
    t.source_networks.add(*Cidr::parse("::/0"));
    return t;
}

ConnectRequest with_basic(const std::string& user, const std::string& password) {
    ConnectRequest r;
    r.host = "api.dingtalk.com";
    r.port = 443;
    r.has_authorization = true;
    r.basic = BasicCredentials{user, password};
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(policy)

BOOST_AUTO_TEST_CASE(wildcard_matches_subdomains_but_not_apex_or_lookalikes) {
    auto r = rule("*.dingtalk.com:443");
    BOOST_TEST(r.matches("oapi.dingtalk.com", 443));
    BOOST_TEST(r.matches("a.b.dingtalk.com", 443));
    BOOST_TEST(!r.matches("dingtalk.com", 443));
    BOOST_TEST(!r.matches("evildingtalk.com", 443));
    BOOST_TEST(!r.matches("oapi.dingtalk.com.evil.com", 443));
    BOOST_TEST(!r.matches("oapi.dingtalk.com", 80));
}

BOOST_AUTO_TEST_CASE(exact_hosts_ports_and_ranges) {
    BOOST_TEST(rule("API.DingTalk.com:443").matches("api.dingtalk.com", 443));
    BOOST_TEST(rule("api.dingtalk.com.:443").matches("api.dingtalk.com", 443));
    BOOST_TEST(rule("oapi.dingtalk.com:*").matches("oapi.dingtalk.com", 8443));
    BOOST_TEST(rule("*:443").matches("anything.example", 443));
    BOOST_TEST(!rule("*:443").matches("anything.example", 444));
    auto range = rule("localhost:8000-8999");
    BOOST_TEST(range.matches("localhost", 8000));
    BOOST_TEST(range.matches("localhost", 8999));
    BOOST_TEST(!range.matches("localhost", 9000));
    BOOST_TEST(rule("[::1]:443").matches("::1", 443));
    BOOST_TEST(rule("127.0.0.1:443").matches("127.0.0.1", 443));
}

BOOST_AUTO_TEST_CASE(bad_rules_are_refused) {
    for (const char* s : {"example.com", "example.com:0", "example.com:70000", "example.com:9-1", "exa mple.com:443",
                          "*.:443", "[::1:443", "example.com:x"}) {
        BOOST_TEST(!DestinationRule::parse(s, nullptr), s);
    }
}

BOOST_AUTO_TEST_CASE(default_deny_covers_internal_ranges_in_every_spelling) {
    Policy policy({}, default_deny_networks());
    Tenant t = tenant_with({"*:*"});
    for (const char* denied : {"127.0.0.1",
                               "127.255.255.254",
                               "10.1.2.3",
                               "172.16.0.1",
                               "172.31.255.255",
                               "192.168.1.1",
                               "169.254.169.254",
                               "100.64.0.1",
                               "0.0.0.0",
                               "224.0.0.1",
                               "255.255.255.255",
                               "::1",
                               "::",
                               "fe80::1",
                               "fc00::1",
                               "fd00:ec2::254",
                               "ff02::1",
                               "::ffff:127.0.0.1",
                               "::ffff:169.254.169.254",
                               "::ffff:10.0.0.1",
                               "::127.0.0.1",
                               "64:ff9b::a9fe:a9fe",
                               "64:ff9b::7f00:1",
                               "64:ff9b:1::7f00:1",
                               "64:ff9b:1:2:3:4:a00:1",
                               "64:ff9b:1:0:a:0:100:0",  // 10.0.0.1 in the /64 layout
                               "64:ff9b:1:a00:0:100::",  // 10.0.0.1 in the /48 layout
                               "2002:7f00:1::",
                               "2002:c0a8:101::1",
                               "::ffff:7f00:1"}) {
        BOOST_TEST(!policy.address_allowed(t, ip(denied)), denied);
    }
    for (const char* allowed : {"8.8.8.8", "203.119.1.1", "172.32.0.1", "100.128.0.1", "2400:3200::1",
                                "64:ff9b::808:808", "64:ff9b:1::808:808",
                                "64:ff9b:1:808:8:800::",  // 8.8.8.8 in the /48 layout
                                "2002:808:808::1"}) {
        BOOST_TEST(policy.address_allowed(t, ip(allowed)), allowed);
    }
}

BOOST_AUTO_TEST_CASE(spellings_in_connect_targets_never_reach_loopback) {
    // Every spelling either fails to parse or parses to an address the deny list covers.
    Policy policy({}, default_deny_networks());
    Tenant t = tenant_with({"*:*"});
    for (const char* target :
         {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]",
          "[64:ff9b::127.0.0.1]", "[0::1]", "[::0:1]", "2130706433", "0x7f.1", "017700000001", "127.1", "0177.0.0.1",
          "[::]", "0.0.0.0", "0", "127.0.0.1."}) {
        auto r = parse_connect_head(std::string("CONNECT ") + target + ":443 HTTP/1.1\r\n\r\n");
        if (r.error != HeadError::none) continue;
        BOOST_TEST_REQUIRE(r.request.host_is_ip, target);
        BOOST_TEST(!policy.address_allowed(t, ip(r.request.host.c_str())), target);
    }
}

BOOST_AUTO_TEST_CASE(unspecified_addresses_are_never_a_destination) {
    // Linux connects 0.0.0.0 and :: to this host: before, a tenant allowed 0.0.0.0/0 (or a deny
    // list without 0.0.0.0/8) reached the proxy's own admin port and listeners through them,
    // past the loop guard, and from there any tenant that admits the proxy host.
    Tenant open = tenant_with({"*:*"});
    open.allow_internal.add(*Cidr::parse("0.0.0.0/0"));
    open.allow_internal.add(*Cidr::parse("::/0"));
    NetworkSet loopback_only;
    loopback_only.add(*Cidr::parse("127.0.0.0/8"));
    loopback_only.add(*Cidr::parse("::1/128"));
    auto check = [&](const Policy& policy) {
        for (const Tenant& t : {open, tenant_with({"*:*"})}) {
            for (const char* a : {"0.0.0.0", "::", "::ffff:0.0.0.0", "::ffff:0:0.0.0.0", "64:ff9b::0.0.0.0", "2002::"})
                BOOST_TEST(!policy.address_allowed(t, ip(a)), a);
        }
        BOOST_TEST(policy.address_allowed(open, ip("127.0.0.1")));
    };
    check(Policy({}, default_deny_networks()));
    check(Policy({}, loopback_only));
}

BOOST_AUTO_TEST_CASE(tenant_can_allow_a_specific_internal_network) {
    Policy policy({}, default_deny_networks());
    Tenant t = tenant_with({"*:*"});
    t.allow_internal.add(*Cidr::parse("127.0.0.0/8"));
    BOOST_TEST(policy.address_allowed(t, ip("127.0.0.1")));
    BOOST_TEST(policy.address_allowed(t, ip("::ffff:127.0.0.1")));
    BOOST_TEST(!policy.address_allowed(t, ip("10.0.0.1")));
    BOOST_TEST(!policy.address_allowed(t, ip("::1")));
}

BOOST_AUTO_TEST_CASE(authenticates_by_password_and_source) {
    const ScryptParams fast{10, 8, 1};
    Tenant a = tenant_with({"*.dingtalk.com:443"});
    a.name = "agent";
    a.users.push_back({"alice", PasswordHash::create("pw-a", fast)});
    a.source_networks = NetworkSet();
    a.source_networks.add(*Cidr::parse("127.0.0.0/8"));
    Tenant b = tenant_with({"*.dingtalk.com:443"});
    b.name = "anon";
    b.allow_without_credentials = true;
    b.source_networks = NetworkSet();
    b.source_networks.add(*Cidr::parse("10.9.0.0/16"));
    Policy policy({a, b}, default_deny_networks());

    auto ok = policy.authenticate(ip("127.0.0.1"), with_basic("alice", "pw-a"));
    BOOST_TEST(static_cast<int>(ok.outcome) == static_cast<int>(AuthOutcome::ok));
    BOOST_TEST(ok.tenant->name == "agent");
    // Second success comes from the cache; must still be right.
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("127.0.0.1"), with_basic("alice", "pw-a")).outcome) ==
               static_cast<int>(AuthOutcome::ok));
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("127.0.0.1"), with_basic("alice", "pw-b")).outcome) ==
               static_cast<int>(AuthOutcome::bad_credentials));
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("127.0.0.1"), with_basic("mallory", "pw-a")).outcome) ==
               static_cast<int>(AuthOutcome::bad_credentials));
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("192.0.2.1"), with_basic("alice", "pw-a")).outcome) ==
               static_cast<int>(AuthOutcome::source_not_allowed));
    // No tenant takes 192.0.2.1: refused by the fast part, right, wrong or unknown, without a
    // password check (which would answer verify_password).
    for (const char* user : {"alice", "mallory"}) {
        const AuthResult r = policy.check(ip("192.0.2.1"), with_basic(user, "pw-x"));
        BOOST_TEST(static_cast<int>(r.outcome) == static_cast<int>(AuthOutcome::source_not_allowed));
        // Nothing was checked: the claimed name puts no tenant on the refusal (its log line and
        // metrics), so an outsider cannot write into alice's tenant's figures.
        BOOST_TEST(r.tenant == nullptr, user);
    }
    // 10.9.1.1 is the credential-less tenant's: a name from another tenant is still checked there
    // (then refused for its source once verified).
    BOOST_TEST(static_cast<int>(policy.check(ip("10.9.1.1"), with_basic("alice", "pw-x")).outcome) ==
               static_cast<int>(AuthOutcome::verify_password));
    BOOST_TEST(policy.source_tenant(ip("10.9.1.1"))->name == "anon");
    BOOST_TEST(policy.source_tenant(ip("127.0.0.2"))->name == "agent");
    BOOST_TEST(policy.source_tenant(ip("192.0.2.1")) == nullptr);

    // The most specific network decides, whatever the order: a tenant open to everyone (listed
    // first) does not take the addresses of one that lists its own network.
    Tenant open = tenant_with({"*.dingtalk.com:443"});
    open.name = "open";
    Tenant narrow = tenant_with({"*.dingtalk.com:443"});
    narrow.name = "narrow";
    narrow.source_networks = NetworkSet();
    narrow.source_networks.add(*Cidr::parse("198.51.100.0/24"));
    narrow.source_networks.add(*Cidr::parse("2001:db8::/32"));
    Tenant same = narrow;
    same.name = "same";
    Policy order({open, narrow, same}, default_deny_networks());
    BOOST_TEST(order.source_tenant(ip("198.51.100.7"))->name == "narrow");  // the first of two equals
    BOOST_TEST(order.source_tenant(ip("2001:db8::1"))->name == "narrow");
    BOOST_TEST(order.source_tenant(ip("203.0.113.1"))->name == "open");

    ConnectRequest none;
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("127.0.0.1"), none).outcome) ==
               static_cast<int>(AuthOutcome::need_credentials));
    auto anon = policy.authenticate(ip("10.9.1.1"), none);
    BOOST_TEST(static_cast<int>(anon.outcome) == static_cast<int>(AuthOutcome::ok));
    BOOST_TEST(anon.tenant->name == "anon");
    ConnectRequest garbage;
    garbage.has_authorization = true;
    BOOST_TEST(static_cast<int>(policy.authenticate(ip("10.9.1.1"), garbage).outcome) ==
               static_cast<int>(AuthOutcome::bad_credentials));
}

// A reload builds a new Policy around the running cache: unchanged users stay cached, a user
// whose stored hash changed does not.
BOOST_AUTO_TEST_CASE(a_certificate_on_a_dedicated_listener_names_only_that_listeners_tenant) {
    // Before: the subject was matched against every tenant, so tenant beta's own client CA
    // (trusted on beta's listener) could issue alpha's subject and get in as alpha.
    Tenant alpha = tenant_with({"alpha.example:443"});
    alpha.name = "alpha";
    alpha.client_certificates = {"O=Alpha Corp,CN=alpha"};
    Tenant beta = tenant_with({"beta.example:443"});
    beta.name = "beta";
    beta.client_certificates = {"CN=beta"};
    Policy policy({alpha, beta}, default_deny_networks());
    ConnectRequest req;
    req.host = "alpha.example";
    req.port = 443;
    const std::string forged = "O=Alpha Corp,CN=alpha", beta_listener = "beta";
    const AuthResult on_beta = policy.check(ip("127.0.0.1"), req, ClientContext{&forged, &beta_listener});
    BOOST_REQUIRE(on_beta.tenant != nullptr);
    BOOST_TEST(on_beta.tenant->name == "beta");  // the listener's tenant, not the subject's
    BOOST_TEST(on_beta.user.empty());
    // On a shared listener (and on alpha's own) the subject names alpha.
    const AuthResult shared = policy.check(ip("127.0.0.1"), req, ClientContext{&forged, nullptr});
    BOOST_REQUIRE(shared.tenant != nullptr);
    BOOST_TEST(shared.tenant->name == "alpha");
    BOOST_TEST(shared.user == "cert:O=Alpha Corp,CN=alpha");
}

BOOST_AUTO_TEST_CASE(a_shared_credential_cache_keeps_only_unchanged_hashes) {
    const ScryptParams fast{10, 8, 1};
    Tenant t = tenant_with({"*.dingtalk.com:443"});
    t.users.push_back({"alice", PasswordHash::create("pw-a", fast)});
    t.users.push_back({"bob", PasswordHash::create("pw-b", fast)});
    const Policy before({t}, default_deny_networks());
    for (const char* creds : {"alice", "bob"}) {
        const std::string password = std::string("pw-") + creds[0];
        BOOST_REQUIRE(static_cast<int>(before.authenticate(ip("127.0.0.1"), with_basic(creds, password)).outcome) ==
                      static_cast<int>(AuthOutcome::ok));
    }
    Tenant reloaded = t;
    reloaded.users[1].hash = PasswordHash::create("pw-b", fast);  // bob's password set again: new salt
    const Policy after({reloaded}, default_deny_networks(), before.credential_cache());
    auto outcome = [&](const char* user, const char* password) {
        return static_cast<int>(after.check(ip("127.0.0.1"), with_basic(user, password)).outcome);
    };
    BOOST_TEST(outcome("alice", "pw-a") == static_cast<int>(AuthOutcome::ok));
    BOOST_TEST(outcome("bob", "pw-b") == static_cast<int>(AuthOutcome::verify_password));
    const Policy fresh({t}, default_deny_networks());
    BOOST_TEST(static_cast<int>(fresh.check(ip("127.0.0.1"), with_basic("alice", "pw-a")).outcome) ==
               static_cast<int>(AuthOutcome::verify_password));
}

// Unknown names are checked as slowly as the slowest configured hash: no configured user answers
// slower than a name that does not exist.
BOOST_AUTO_TEST_CASE(unknown_users_are_checked_with_the_costliest_parameters_in_use) {
    Tenant t = tenant_with({"*.dingtalk.com:443"});
    t.users.push_back({"cheap", PasswordHash::decoy(ScryptParams{10, 8, 1})});
    t.users.push_back({"costly", PasswordHash::decoy(ScryptParams{12, 8, 2})});
    t.users.push_back({"wide", PasswordHash::decoy(ScryptParams{11, 16, 1})});
    const Policy policy({t}, default_deny_networks());
    BOOST_TEST(policy.decoy_params().log2_n == 12);
    BOOST_TEST(policy.decoy_params().p == 2);
    BOOST_TEST(Policy({tenant_with({})}, default_deny_networks()).decoy_params().log2_n == ScryptParams{}.log2_n);
    const auto unknown = policy.authenticate(ip("127.0.0.1"), with_basic("nobody", "pw"));
    BOOST_TEST(static_cast<int>(unknown.outcome) == static_cast<int>(AuthOutcome::bad_credentials));
}

BOOST_AUTO_TEST_SUITE_END()
