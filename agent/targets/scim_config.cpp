#include <filesystem>

#include "agent/targets/scim_settings.h"
#include "shared/config.h"

namespace dingbridge::agent {

namespace {

std::string relative_to(const std::string& config_file, const std::string& p) {
    if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
    return (std::filesystem::path(config_file).parent_path() / p).lexically_normal().string();
}

bool loopback_url(const std::string& url) {
    auto rest = url.substr(url.find("//") + 2);
    auto host = rest.substr(0, rest.find_first_of("/?#"));
    if (host.rfind("[::1]", 0) == 0) return host.size() == 5 || host[5] == ':';
    host = host.substr(0, host.find(':'));
    if (host == "localhost") return true;
    // 127.x.y.z, digits and dots only (not 127.example.com)
    return host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos;
}

void check_base_url(const ConfigNode& n, const std::string& url) {
    bool https = url.rfind("https://", 0) == 0, http = url.rfind("http://", 0) == 0;
    if (!https && !http) n.fail("must start with https://");
    // The bearer token must never cross a network in clear.
    if (http && !loopback_url(url)) n.fail("must start with https:// (http:// only for a server on loopback)");
    auto rest = url.substr(url.find("//") + 2);
    if (rest.substr(0, rest.find('/')).find('@') != std::string::npos)
        n.fail("must not hold credentials; put the token in target.scim.token");
    if (url.find_first_of("?# ") != std::string::npos) n.fail("must be a base URL without query or fragment");
}

}  // namespace

void load_scim_settings(const ConfigNode& l, const std::string& path, bool resolve_secrets, ScimSettings& s) {
    if (!l.is_map()) l.fail("must be a map");
    s.base_url = l.get("base_url").as_string();
    check_base_url(l.get("base_url"), s.base_url);
    while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
    s.token = resolve_secrets ? l.get("token").as_secret() : l.get("token").as_string();
    if (s.token.empty()) l.get("token").fail("must not be empty");
    if (s.token.find_first_of("\r\n") != std::string::npos) l.get("token").fail("must be one line");
    if (auto n = l.find("ca_file")) s.ca_file = relative_to(path, n->as_string());
    if (auto n = l.find("proxy")) {
        s.proxy_url = n->as_string();
        bool ok = s.proxy_url.empty() || s.proxy_url.rfind("http://", 0) == 0 || s.proxy_url.rfind("https://", 0) == 0;
        if (!ok) n->fail("must start with http:// or https://");
        auto rest = s.proxy_url.substr(s.proxy_url.find("//") + 2);
        if (!s.proxy_url.empty() && rest.substr(0, rest.find('/')).find('@') != std::string::npos)
            n->fail("must not hold credentials");
    }
    if (auto n = l.find("proxy_ca_file")) s.proxy_ca_file = relative_to(path, n->as_string());
    s.connect_timeout = l.get_duration("connect_timeout", s.connect_timeout);
    s.timeout = l.get_duration("timeout", s.timeout);
    if (auto n = l.find("max_rate")) s.max_rate = static_cast<double>(n->as_int(0, 100000));
    if (auto n = l.find("concurrency")) s.concurrency = static_cast<int>(n->as_int(1, 64));
    if (auto n = l.find("max_attempts")) s.max_attempts = static_cast<int>(n->as_int(1, 20));
    s.backoff_base = l.get_duration("backoff_base", s.backoff_base);
    s.backoff_max = l.get_duration("backoff_max", s.backoff_max);
    if (auto n = l.find("page_size")) s.page_size = static_cast<int>(n->as_int(1, 10000));
    if (auto n = l.find("members_per_request")) s.members_per_request = static_cast<int>(n->as_int(1, 10000));
    s.update_method = l.get_string("update_method", s.update_method);
    if (s.update_method != "auto" && s.update_method != "patch" && s.update_method != "put")
        l.get("update_method").fail("must be auto, patch or put");
    s.department_schema = l.get_string("department_schema", s.department_schema);
    if (s.department_schema.rfind("urn:", 0) != 0) l.get("department_schema").fail("must be a schema URN (urn:...)");
    s.parent_attribute = l.get_string("parent_attribute", s.parent_attribute);
    if (s.parent_attribute.empty() || s.parent_attribute.find_first_of(":. \"") != std::string::npos)
        l.get("parent_attribute").fail("must be an attribute name (no ':', '.', spaces)");
    s.leaders_attribute = l.get_string("leaders_attribute", s.leaders_attribute);
    if (s.leaders_attribute.empty() || s.leaders_attribute.find_first_of(":. \"") != std::string::npos ||
        s.leaders_attribute == s.parent_attribute)
        l.get("leaders_attribute").fail("must be an attribute name (no ':', '.', spaces), not parent_attribute");
    s.external_id_prefix = l.get_string("external_id_prefix", s.external_id_prefix);
    for (unsigned char c : s.external_id_prefix)
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            l.get("external_id_prefix").fail("must not hold quotes, backslashes or control characters");
    l.reject_unknown();
}

}  // namespace dingbridge::agent
