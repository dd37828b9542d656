// The web: section of agent.yaml (the read-only console and metrics, docs/console.md).
#include <filesystem>

#include "agent/config.h"
#include "shared/config.h"
#include "shared/net.h"

namespace dingbridge::agent {

namespace {

bool is_loopback(const std::string& host) {
    auto ip = IpAddress::parse(host);
    if (!ip) return false;
    for (const char* net : {"127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"})
        if (auto c = Cidr::parse(net); c && c->contains(*ip)) return true;
    return false;
}

std::string file_path(const ConfigNode& n, const std::string& base) {
    std::string p = n.as_string();
    if (p.empty()) n.fail("must be a file path");
    if (std::filesystem::path(p).is_absolute()) return p;
    return (std::filesystem::path(base).parent_path() / p).lexically_normal().string();
}

void load_users(const ConfigNode& list, AgentConfig::Web& web) {
    if (!list.is_sequence()) list.fail("must be a list of {name, password_hash}");
    for (const auto& u : list.items()) {
        AgentConfig::Web::User user{u.get("name").as_string(), u.get("password_hash").as_string()};
        if (user.name.empty() || user.name.find(':') != std::string::npos)
            u.get("name").fail("must be a non-empty name without ':'");
        if (user.password_hash.rfind("$scrypt$", 0) != 0)
            u.get("password_hash").fail("must be a $scrypt$ hash: create one with `dingbridge-agent hash-password`");
        u.reject_unknown();
        web.users.push_back(std::move(user));
    }
}

}  // namespace

void load_web_section(const ConfigNode& w, AgentConfig::Web& web, const std::string& file) {
    web.listen = w.get_string("listen", "");
    auto hp = split_host_port(web.listen, true);
    if (!web.listen.empty() && (!hp || !IpAddress::parse(hp->host)))
        w.get("listen").fail("must be IP:port, e.g. 127.0.0.1:9480");
    if (auto u = w.find("users")) load_users(*u, web);
    if (auto t = w.find("tls")) {
        web.tls_certificate = file_path(t->get("certificate"), file);
        web.tls_key = file_path(t->get("key"), file);
        if (auto ca = t->find("client_ca")) web.client_ca = file_path(*ca, file);
        t->reject_unknown();
    }
    if (auto n = w.find("runs_shown")) web.runs_shown = static_cast<int>(n->as_int(1, 10000));
    w.reject_unknown();
    web.passwords_in_clear =
        !web.listen.empty() && !is_loopback(hp->host) && !web.users.empty() && web.tls_certificate.empty();
    if (!web.listen.empty() && !is_loopback(hp->host) && web.users.empty() && web.client_ca.empty())
        w.get("listen").fail(web.listen +
                             " is not a loopback address: the console refuses to serve it without credentials "
                             "(set web.users with password hashes, or web.tls.client_ca for client certificates)");
}

}  // namespace dingbridge::agent
