#pragma once
// AgentConfig: agent.yaml (every key documented in configs/agent.yaml). Loading throws
// ConfigError with file:line:column; secrets (${env:NAME}, ${file:/path}) are resolved here and
// kept only in memory; `secrets()` lists their values so that every message the agent writes
// can be scrubbed of them.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/dingtalk/client.h"
#include "agent/org/plan.h"
#include "agent/targets/ldap_settings.h"
#include "agent/targets/scim_settings.h"
#include "shared/log.h"

namespace dingbridge {
class ConfigNode;
}

namespace dingbridge::agent {

struct AgentConfig {
    std::string file;
    std::string corp_id;
    dingtalk::ClientSettings client;
    std::string api_base_url = "https://api.dingtalk.com";
    std::int64_t root_department = 1;
    std::string target_type = "sqlite";
    std::string target_path;  // sqlite file
    LdapSettings ldap;        // target_type == "ldap"
    ScimSettings scim;        // target_type == "scim"
    std::string mapping_file;
    DeleteLimit max_deletes;
    std::string max_deletes_text = "10%";
    std::string state_dir;
    std::chrono::milliseconds progress_interval{5000};
    // How long finished runs (with their items) and settled events stay in state.db; 0 = always.
    std::chrono::seconds history_keep{std::chrono::hours(24 * 180)};
    LogSettings log;
    std::int64_t monthly_call_budget = 10000;  // 0 = unlimited

    // `run` (events: section; docs/agent.md "Run mode").
    struct Events {
        std::string mode = "stream";  // stream or http (push)
        std::chrono::milliseconds coalesce{10};
        std::chrono::seconds reconcile_interval{7 * 24 * 3600};
        std::chrono::seconds catch_up_after{24 * 3600};  // away longer: full sync on start
        std::chrono::milliseconds reconnect_min{1000};
        std::chrono::milliseconds reconnect_max{60000};
        std::chrono::seconds keepalive{60};
        int give_up_after = 8;  // attempts per journaled event before it is left to the reconcile
        // http (push) mode: the receiver's address and path, the console's token and aes_key
        // (secrets), the owner key the payload must end with (default: the AppKey), and how far a
        // push's timestamp may be from now.
        std::string push_listen, push_path = "/dingtalk/push";
        std::string push_token, push_aes_key;
        std::string push_owner_key;  // empty = dingtalk.app_key
        std::chrono::seconds push_max_skew{300};
        std::string status_listen;  // /healthz and /metrics; empty = off
    } events;

    // The read-only web console and metrics (web: section; docs/console.md). Empty listen = off.
    struct Web {
        std::string listen;
        struct User {
            std::string name, password_hash;  // $scrypt$... (`dingbridge-agent hash-password`)
        };
        std::vector<User> users;
        std::string tls_certificate, tls_key, client_ca;  // PEM files; client_ca = client certificates
        int runs_shown = 100;
        // Passwords (web.users) on a listener that is neither loopback nor TLS: they cross the
        // network in clear. Allowed (a private network, a TLS front), warned about at start.
        bool passwords_in_clear = false;
    } web;

    std::vector<std::string> secrets() const;

    // `history` reads only the state database: it loads with Secrets::leave, so that it runs
    // without the AppSecret or proxy password in the environment (the references stay unresolved).
    enum class Secrets { resolve, leave };
    static AgentConfig load(const std::string& path, Secrets secrets = Secrets::resolve);  // throws ConfigError
};

// Reads the web: section (agent/config_web.cpp); `file` resolves relative paths.
void load_web_section(const dingbridge::ConfigNode& node, AgentConfig::Web& web, const std::string& file);

// Replaces every occurrence of each secret (non-empty, length >= 4) with "***".
std::string redact(std::string text, const std::vector<std::string>& secrets);

}  // namespace dingbridge::agent
