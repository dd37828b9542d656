#include "agent/config.h"

#include <cctype>
#include <filesystem>
#include <utility>

#include "shared/ascii.h"
#include "shared/config.h"
#include "shared/dingtalk_crypto.h"
#include "shared/net.h"

namespace dingbridge::agent {

namespace fs = std::filesystem;

namespace {

std::string resolve_relative(const std::string& base_file, const std::string& p) {
    if (p.empty() || fs::path(p).is_absolute()) return p;
    return (fs::path(base_file).parent_path() / p).lexically_normal().string();
}

void check_url(const ConfigNode& n, const std::string& url, bool allow_http) {
    bool https = url.rfind("https://", 0) == 0;
    bool http = url.rfind("http://", 0) == 0;
    if (!https && !(allow_http && http))
        n.fail(allow_http ? "must start with http:// or https://" : "must start with https://");
}

const char* const kUserFields[] = {"username", "display_name", "email",      "phone",    "employee_number",
                                   "title",    "union_id",     "avatar_url", "hired_at", "primary_department"};

bool valid_attribute_name(const std::string& a) {
    if (a.empty() || !std::isalpha(static_cast<unsigned char>(a[0]))) return false;
    for (char ch : a)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-') return false;
    return true;
}

// A DN given in the configuration: refuse what libldap would not parse, so that the error names
// the key instead of failing every change of a run.
void check_dn(const ConfigNode& n, const std::string& dn) {
    if (dn.empty()) n.fail("must not be empty");
    if (dn.find('=') == std::string::npos) n.fail("must be a DN such as ou=people,dc=example,dc=com");
}

void load_ldap(const ConfigNode& l, const std::string& path, LdapSettings& s) {
    if (!l.is_map()) l.fail("must be a map");
    s.url = l.get("url").as_string();
    bool ldaps = s.url.rfind("ldaps://", 0) == 0;
    if (!ldaps && s.url.rfind("ldap://", 0) != 0) l.get("url").fail("must start with ldap:// (StartTLS) or ldaps://");
    // The bind password must never cross the network in clear: ldap:// always upgrades with StartTLS.
    if (auto n = l.find("start_tls"))
        if (!n->as_bool() && !ldaps)
            n->fail("must be true: ldap:// without StartTLS would send the bind password in clear");
    if (auto n = l.find("ca_file")) s.ca_file = resolve_relative(path, n->as_string());
    s.bind_dn = l.get("bind_dn").as_string();
    check_dn(l.get("bind_dn"), s.bind_dn);
    s.bind_password = l.get("bind_password").as_secret();
    if (s.bind_password.empty()) l.get("bind_password").fail("must not be empty");
    s.base_dn = l.get("base_dn").as_string();
    check_dn(l.get("base_dn"), s.base_dn);
    s.departments_dn = l.get_string("departments_dn", "ou=departments," + s.base_dn);
    if (auto n = l.find("departments_dn")) check_dn(*n, s.departments_dn);
    s.users_dn = l.get_string("users_dn", "ou=people," + s.base_dn);
    if (auto n = l.find("users_dn")) check_dn(*n, s.users_dn);
    s.removed_users_dn = l.get_string("removed_users_dn", "ou=disabled," + s.base_dn);
    if (auto n = l.find("removed_users_dn")) check_dn(*n, s.removed_users_dn);
    if (s.removed_users_dn == s.users_dn) l.get("removed_users_dn").fail("must differ from users_dn");
    s.group_class = l.get_string("group_class", "groupOfNames");
    if (s.group_class != "groupOfNames" && s.group_class != "groupOfUniqueNames" && s.group_class != "none")
        l.get("group_class").fail("must be groupOfNames, groupOfUniqueNames or none");
    s.empty_group_member = l.get_string("empty_group_member", "");
    if (auto n = l.find("empty_group_member"); n && !s.empty_group_member.empty()) check_dn(*n, s.empty_group_member);
    for (auto [key, dst] : {std::pair<const char*, std::string*>{"department_id_attribute", &s.department_id_attribute},
                            {"user_id_attribute", &s.user_id_attribute},
                            {"user_rdn_attribute", &s.user_rdn_attribute},
                            {"manager_attribute", &s.manager_attribute}}) {
        if (auto n = l.find(key)) {
            *dst = n->as_string();
            if (!(dst->empty() && std::string(key) == "manager_attribute") && !valid_attribute_name(*dst))
                n->fail("must be an LDAP attribute name");
        }
    }
    if (auto n = l.find("user_attributes")) {
        for (const auto& item : n->items()) {
            std::string text = item.as_string();
            auto eq = text.find('=');
            LdapAttribute a{eq == std::string::npos ? "" : text.substr(0, eq),
                            eq == std::string::npos ? "" : text.substr(eq + 1)};
            if (!valid_attribute_name(a.attribute)) item.fail("must be ATTRIBUTE=FIELD, e.g. mail=email");
            bool known = a.field.rfind("custom.", 0) == 0 && a.field.size() > 7;
            for (const char* f : kUserFields) known = known || a.field == f;
            if (!known)
                item.fail("unknown field \"" + a.field +
                          "\"; valid: username, display_name, email, phone, "
                          "employee_number, title, union_id, avatar_url, hired_at, primary_department, custom.NAME");
            for (const auto& other : s.user_attributes)
                if (ascii_lower(other.attribute) == ascii_lower(a.attribute))
                    item.fail("attribute " + a.attribute + " is listed twice");
            if (ascii_lower(a.attribute) == ascii_lower(s.user_id_attribute) ||
                ascii_lower(a.attribute) == ascii_lower(s.manager_attribute))
                item.fail(a.attribute + " is reserved (user_id_attribute or manager_attribute)");
            s.user_attributes.push_back(std::move(a));
        }
    } else {
        s.user_attributes = {{"uid", "username"},    {"cn", "display_name"},
                             {"sn", "display_name"}, {"displayName", "display_name"},
                             {"mail", "email"},      {"mobile", "phone"},
                             {"title", "title"},     {"departmentNumber", "primary_department"}};
    }
    const LdapAttribute* rdn = nullptr;
    for (const auto& a : s.user_attributes)
        if (a.attribute == s.user_rdn_attribute) rdn = &a;
    if (!rdn) l.fail("user_rdn_attribute " + s.user_rdn_attribute + " must be one of user_attributes");
    // The RDN names the entry: two users with one value would be one DN, and the second never
    // created. The plan keeps only the unique fields unique (sync.conflict_policy).
    if (rdn->field != "username" && rdn->field != "email" && rdn->field != "phone") {
        const ConfigNode at = l.find("user_rdn_attribute").value_or(l);
        at.fail("user_rdn_attribute " + s.user_rdn_attribute + " is mapped to " + rdn->field +
                ", which two users may share (two users named 张伟 would need one DN): use an attribute mapped to "
                "username, email or phone (uid=username by default)");
    }
    if (auto n = l.find("page_size")) s.page_size = static_cast<int>(n->as_int(1, 100000));
    s.timeout = l.get_duration("timeout", std::chrono::seconds(30));
    l.reject_unknown();
}

std::string read_secret(AgentConfig::Secrets secrets, const ConfigNode& n) {
    return secrets == AgentConfig::Secrets::resolve ? n.as_secret() : n.as_string();
}

void load_dingtalk_section(const ConfigNode& dt, const std::string& path, AgentConfig::Secrets secrets,
                           AgentConfig& c) {
    c.corp_id = dt.get_string("corp_id", "");
    c.client.app_key = dt.get("app_key").as_string();
    if (c.client.app_key.empty()) dt.get("app_key").fail("must not be empty");
    c.client.app_secret = read_secret(secrets, dt.get("app_secret"));
    if (c.client.app_secret.empty()) dt.get("app_secret").fail("must not be empty");
    if (auto n = dt.find("oapi_base_url")) {
        c.client.oapi_base = n->as_string();
        check_url(*n, c.client.oapi_base, false);
    }
    if (auto n = dt.find("api_base_url")) {
        c.api_base_url = n->as_string();
        check_url(*n, c.api_base_url, false);
    }
    if (auto n = dt.find("ca_file")) c.client.transport.ca_file = resolve_relative(path, n->as_string());
    if (auto n = dt.find("root_department")) c.root_department = n->as_int(1, INT64_MAX);
    if (auto n = dt.find("qps")) c.client.qps = static_cast<double>(n->as_int(1, 1000));
    if (auto n = dt.find("qps_total")) c.client.qps_total = static_cast<double>(n->as_int(1, 10000));
    if (auto n = dt.find("concurrency")) c.client.transport.max_in_flight = static_cast<int>(n->as_int(1, 64));
    if (auto n = dt.find("max_attempts")) c.client.max_attempts = static_cast<int>(n->as_int(1, 20));
    c.client.transport.connect_timeout = dt.get_duration("connect_timeout", std::chrono::seconds(10));
    c.client.transport.request_timeout = dt.get_duration("request_timeout", std::chrono::seconds(30));
    c.client.backoff_base = dt.get_duration("backoff_base", std::chrono::milliseconds(200));
    c.client.backoff_max = dt.get_duration("backoff_max", std::chrono::seconds(8));
    if (auto n = dt.find("monthly_call_budget")) c.monthly_call_budget = n->as_int(0, INT64_MAX);
    dt.reject_unknown();
}

void load_proxy_section(const ConfigNode& proxy, const std::string& path, AgentConfig::Secrets secrets,
                        AgentConfig& c) {
    if (auto n = proxy.find("url")) {
        c.client.transport.proxy_url = n->as_string();
        if (!c.client.transport.proxy_url.empty()) {
            check_url(*n, c.client.transport.proxy_url, true);
            // Credentials inside the URL would be printed wherever the URL is; they have keys.
            auto rest = c.client.transport.proxy_url.substr(c.client.transport.proxy_url.find("//") + 2);
            if (rest.substr(0, rest.find('/')).find('@') != std::string::npos)
                n->fail("put the proxy credentials in proxy.username and proxy.password, not in the URL");
        }
    }
    c.client.transport.proxy_username = proxy.get_string("username", "");
    if (auto n = proxy.find("password")) c.client.transport.proxy_password = read_secret(secrets, *n);
    if (!c.client.transport.proxy_password.empty() && c.client.transport.proxy_username.empty())
        proxy.get("password").fail("a password needs a username");
    if (auto n = proxy.find("ca_file")) c.client.transport.proxy_ca_file = resolve_relative(path, n->as_string());
    proxy.reject_unknown();
}

void load_target_section(const ConfigNode& target, const std::string& path, AgentConfig::Secrets secrets,
                         AgentConfig& c) {
    if (auto n = target.find("type")) {
        c.target_type = n->as_string();
        if (c.target_type != "sqlite" && c.target_type != "ldap" && c.target_type != "scim")
            n->fail("must be sqlite, ldap or scim");
    }
    if (auto n = target.find("path")) c.target_path = resolve_relative(path, n->as_string());
    if (c.target_type == "ldap") {
        if (!target.has("ldap")) target.get("type").fail("type ldap needs a target.ldap section");
        load_ldap(target.get("ldap"), path, c.ldap);
    } else if (auto n = target.find("ldap")) {
        n->fail("target.ldap is only read with type: ldap");
    }
    if (c.target_type == "scim") {
        if (!target.has("scim")) target.get("type").fail("type scim needs a target.scim section");
        load_scim_settings(target.get("scim"), path, secrets == AgentConfig::Secrets::resolve, c.scim);
    } else if (auto n = target.find("scim")) {
        n->fail("target.scim is only read with type: scim");
    }
    target.reject_unknown();
}

void load_events_section(const ConfigNode& ev, AgentConfig::Secrets secrets, AgentConfig::Events& e) {
    if (auto n = ev.find("mode")) {
        e.mode = n->as_string();
        if (e.mode != "stream" && e.mode != "http") n->fail("must be stream or http");
    }
    e.push_listen = ev.get_string("push_listen", "");
    if (!e.push_listen.empty() && !split_host_port(e.push_listen, true))
        ev.get("push_listen").fail("must be IP:port, e.g. 127.0.0.1:8080");
    if (auto n = ev.find("push_path")) e.push_path = n->as_string();
    if (e.push_path.empty() || e.push_path[0] != '/' || e.push_path.find_first_of("?# ") != std::string::npos)
        ev.get("push_path").fail("must be a path starting with / (no query)");
    if (auto n = ev.find("push_token")) e.push_token = read_secret(secrets, *n);
    if (auto n = ev.find("push_aes_key")) {
        e.push_aes_key = read_secret(secrets, *n);
        if (secrets == AgentConfig::Secrets::resolve && !dingtalk_crypto::valid_aes_key(e.push_aes_key))
            n->fail("must be the console's aes_key: 43 characters of [A-Za-z0-9]");
    }
    e.push_owner_key = ev.get_string("push_owner_key", "");
    e.push_max_skew =
        std::chrono::duration_cast<std::chrono::seconds>(ev.get_duration("push_max_skew", e.push_max_skew));
    if (e.push_max_skew.count() < 1) ev.get("push_max_skew").fail("must be at least 1s");
    if (e.mode == "http") {
        if (e.push_listen.empty()) ev.get("mode").fail("mode http needs events.push_listen");
        if (e.push_token.empty() && secrets == AgentConfig::Secrets::resolve)
            ev.get("mode").fail("mode http needs events.push_token (the console's token)");
        if (e.push_aes_key.empty() && secrets == AgentConfig::Secrets::resolve)
            ev.get("mode").fail("mode http needs events.push_aes_key (the console's aes_key)");
    }
    e.coalesce = ev.get_duration("coalesce", e.coalesce);
    e.reconcile_interval =
        std::chrono::duration_cast<std::chrono::seconds>(ev.get_duration("reconcile_interval", e.reconcile_interval));
    e.catch_up_after =
        std::chrono::duration_cast<std::chrono::seconds>(ev.get_duration("catch_up_after", e.catch_up_after));
    e.reconnect_min = ev.get_duration("reconnect_min", e.reconnect_min);
    e.reconnect_max = ev.get_duration("reconnect_max", e.reconnect_max);
    e.keepalive = std::chrono::duration_cast<std::chrono::seconds>(ev.get_duration("keepalive", e.keepalive));
    if (e.keepalive.count() < 2) ev.get("keepalive").fail("must be at least 2s");
    if (auto n = ev.find("give_up_after")) e.give_up_after = static_cast<int>(n->as_int(1, 1000));
    e.status_listen = ev.get_string("status_listen", "");
    if (!e.status_listen.empty() && !split_host_port(e.status_listen, true))
        ev.get("status_listen").fail("must be IP:port, e.g. 127.0.0.1:9464");
    ev.reject_unknown();
}

}  // namespace

std::vector<std::string> AgentConfig::secrets() const {
    std::vector<std::string> s;
    if (!client.app_secret.empty()) s.push_back(client.app_secret);
    if (!client.transport.proxy_password.empty()) s.push_back(client.transport.proxy_password);
    if (!events.push_token.empty()) s.push_back(events.push_token);
    if (!events.push_aes_key.empty()) s.push_back(events.push_aes_key);
    if (!ldap.bind_password.empty()) s.push_back(ldap.bind_password);
    if (!scim.token.empty()) s.push_back(scim.token);
    return s;
}

std::string redact(std::string text, const std::vector<std::string>& secrets) {
    for (const auto& s : secrets) {
        if (s.size() < 4) continue;
        for (size_t p = text.find(s); p != std::string::npos; p = text.find(s, p + 3)) text.replace(p, s.size(), "***");
    }
    return text;
}

AgentConfig AgentConfig::load(const std::string& path, Secrets secrets) {
    AgentConfig c;
    c.file = path;
    ConfigNode root = ConfigNode::load_file(path);
    if (!root.is_map()) root.fail("agent.yaml must be a YAML map");

    load_dingtalk_section(root.get("dingtalk"), path, secrets, c);

    if (auto proxy = root.find("proxy")) load_proxy_section(*proxy, path, secrets, c);

    c.state_dir = resolve_relative(path, root.get("state_dir").as_string());
    if (c.state_dir.empty()) root.get("state_dir").fail("must not be empty");

    if (auto target = root.find("target")) load_target_section(*target, path, secrets, c);
    if (c.target_path.empty()) c.target_path = (fs::path(c.state_dir) / "org.db").string();

    c.mapping_file = resolve_relative(path, root.get("mapping").as_string());

    if (auto sg = root.find("safeguard")) {
        if (auto n = sg->find("max_deletes")) {
            c.max_deletes_text = n->as_string();
            auto l = DeleteLimit::parse(c.max_deletes_text);
            if (!l) n->fail("must be a count (50) or a percentage (\"10%\")");
        }
        sg->reject_unknown();
    }
    c.max_deletes = *DeleteLimit::parse(c.max_deletes_text);
    c.progress_interval = root.get_duration("progress_interval", std::chrono::seconds(5));
    c.history_keep = std::chrono::duration_cast<std::chrono::seconds>(
        root.get_duration("history_keep", std::chrono::hours(24 * 180)));

    if (auto log = root.find("log")) {
        c.log.level = log->get_string("level", "info");
        if (!valid_log_level(c.log.level))
            log->get("level").fail("must be trace, debug, info, warn, error, critical or off");
        c.log.format = log->get_string("format", "text");
        if (c.log.format != "text" && c.log.format != "json") log->get("format").fail("must be text or json");
        if (auto f = log->find("file")) c.log.file = resolve_relative(path, f->as_string());
        log->reject_unknown();
    }
    if (auto ev = root.find("events")) load_events_section(*ev, secrets, c.events);
    if (auto w = root.find("web")) load_web_section(*w, c.web, path);
    root.reject_unknown();
    return c;
}

}  // namespace dingbridge::agent
