#pragma once
// ScimSettings: the `target.scim` section of agent.yaml (documented in configs/agent.yaml and
// docs/agent.md, "SCIM target"). Plain values, filled and checked by AgentConfig::load.

#include <chrono>
#include <string>

namespace dingbridge::agent {

struct ScimSettings {
    std::string base_url;  // https://host/scim/v2 (no trailing slash)
    std::string token;     // bearer token (secret)
    std::string ca_file;   // "" = the system bundle
    // An HTTP(S) proxy of the SCIM target's own ("" = direct; never the environment's).
    std::string proxy_url;
    std::string proxy_ca_file;
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds timeout{30000};  // per request
    double max_rate = 0;                       // requests per second; 0 = unlimited
    int concurrency = 4;                       // requests in flight while reading pages
    int max_attempts = 5;                      // per request, for 429, 5xx and network errors
    std::chrono::milliseconds backoff_base{500};
    std::chrono::milliseconds backoff_max{30000};  // also caps a server's Retry-After
    int page_size = 500;
    // Group member additions/removals per PATCH (or PUT); grouped per group over a whole run.
    int members_per_request = 1000;
    std::string update_method = "auto";  // auto (PATCH when /ServiceProviderConfig says so), patch or put
    // Where a department Group keeps its parent's DingTalk id: an extension schema and attribute.
    std::string department_schema = "urn:ietf:params:scim:schemas:extension:dingbridge:2.0:Department";
    std::string parent_attribute = "parent";
    // The attribute of that schema holding the department's leaders (DingTalk userids, in
    // DingTalk's order: managers are derived from them when the agent runs on events).
    std::string leaders_attribute = "leaders";
    // Put before every DingTalk id written as externalId ("dingtalk:" gives "dingtalk:manager7").
    // Empty (the default): every resource with an externalId is taken for ours. Set, only
    // resources whose externalId starts with it are: a shared tenant's other sources (an HR
    // system, Okta) keep theirs untouched.
    std::string external_id_prefix;
};

}  // namespace dingbridge::agent

namespace dingbridge {
class ConfigNode;
}

namespace dingbridge::agent {

// Fills `s` from agent.yaml's target.scim (relative paths resolved against `config_file`); throws
// ConfigError naming the key. With resolve_secrets false the token reference is kept as written.
void load_scim_settings(const ConfigNode& node, const std::string& config_file, bool resolve_secrets, ScimSettings& s);

}  // namespace dingbridge::agent
