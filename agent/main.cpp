// dingbridge-agent: parses the command line, loads agent.yaml and mapping.yaml, opens the state
// database and the target, and hands over to the full sync / history / doctor components.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include "agent/config.h"
#include "agent/doctor.h"
#include "agent/events/journal.h"
#include "agent/host_check.h"
#include "agent/mapping/mapping.h"
#include "agent/run.h"
#include "agent/sync/full_sync.h"
#include "agent/sync/history.h"
#include "agent/targets/ldap_target.h"
#include "agent/targets/scim_target.h"
#include "agent/targets/sqlite_target.h"
#include "agent/web/console.h"
#include "shared/config.h"
#include "shared/log.h"

using namespace dingbridge;
using namespace dingbridge::agent;

namespace {

void print_run(const RunRecord& r, bool items) {
    std::cout << "run " << r.id << "  " << r.kind << (r.dry_run ? " (dry run)" : "") << "  trigger=" << r.trigger
              << "  status=" << r.status << "\n  started  " << r.started_at << "\n  finished "
              << (r.finished_at.empty() ? "-" : r.finished_at) << "\n";
    const auto& c = r.counters;
    std::cout << "  fetched  " << c.departments_fetched << " departments, " << c.users_fetched << " user entries, "
              << c.requests << " requests (" << c.retries << " retries, " << c.throttled << " throttled)\n";
    std::cout << "  changes  " << c.changes_applied << "/" << c.changes_planned << " applied: departments +"
              << c.create_department << " ~" << c.update_department << " -" << c.delete_department << ", users +"
              << c.create_user << " ~" << c.update_user << " disable " << c.disable_user << " delete " << c.delete_user
              << "\n  failed   " << c.items_failed << ", skipped " << c.items_skipped << "\n";
    if (!r.message.empty()) std::cout << "  message  " << r.message << "\n";
    if (items)
        for (const auto& it : r.items)
            std::cout << "  - " << it.at << " [" << it.phase << "] " << it.object_type << " " << it.external_id << " "
                      << it.operation << ": " << it.error << "\n";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "dingbridge-agent: syncs a DingTalk organization (departments and users) through dingbridge-proxy "
        "into an identity directory. See docs/agent.md."};
    std::string config_path = "/etc/dingbridge/agent.yaml";
    app.add_option("-c,--config", config_path, "agent.yaml (documented in configs/agent.yaml)");
    app.set_version_flag("--version", std::string("dingbridge-agent ") + DINGBRIDGE_VERSION);
    app.require_subcommand(0, 1);

    auto* sync = app.add_subcommand("sync", "Run a full sync now");
    bool dry_run = false, force = false;
    sync->add_flag("--dry-run", dry_run, "Print the plan (counts, then each change) and apply nothing");
    sync->add_flag("--force", force, "Apply even when the removals exceed safeguard.max_deletes");

    auto* run = app.add_subcommand("run", "Follow DingTalk's events and apply them as they happen (the service)");

    auto* history = app.add_subcommand("history", "List recent runs, or show one with `history show ID`");
    bool json = false;
    int limit = 20;
    history->add_flag("--json", json, "JSON output");
    history->add_option("--limit", limit, "How many runs to list")->check(CLI::PositiveNumber);
    auto* show = history->add_subcommand("show", "One run with its failed and skipped items");
    std::int64_t show_id = 0;
    show->add_option("id", show_id, "Run id")->required();
    show->add_flag("--json", json, "JSON output");

    auto* web = app.add_subcommand("web", "Serve the read-only web console and metrics alone (web: in agent.yaml)");
    auto* hash_password = app.add_subcommand(
        "hash-password", "Read a password (prompt or one line on stdin) and print the $scrypt$ hash for web.users");

    auto* check = app.add_subcommand("check-config", "Validate agent.yaml and mapping.yaml");
    bool online = false;
    check->add_flag("--online", online, "Also call DingTalk through the proxy and diagnose the path");

    // A word that is no command is kept (not refused by CLI11 with "A subcommand is required"), so
    // that the error can name it. Set after the subcommands, which therefore still refuse extras.
    app.allow_extras();
    CLI11_PARSE(app, argc, argv);
    if (app.get_subcommands().empty()) {
        std::string names;
        for (const auto* sub : app.get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
        if (!app.remaining().empty())
            std::cerr << "dingbridge-agent: unknown command '" << app.remaining().front() << "' (commands: " << names
                      << "; see --help)\n";
        else
            std::cerr << "dingbridge-agent: a command is required: " << names << " (see --help)\n";
        return 2;
    }

    if (*hash_password) try {
            return web::hash_password_command();
        } catch (const std::exception& e) {
            std::cerr << "dingbridge-agent: " << e.what() << "\n";
            return 1;
        }

    AgentConfig config;
    std::optional<Mapping> mapping;
    try {
        // `history` and `web` only read the state database: no secret is needed (nor resolved).
        config = AgentConfig::load(config_path,
                                   *history || *web ? AgentConfig::Secrets::leave : AgentConfig::Secrets::resolve);
        configure_logging(config.log);
        if (!*history && !*web) mapping = Mapping::load_file(config.mapping_file);
    } catch (const ConfigError& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    }

    if (*web) return web::run_console_command(config);

    if (*check) {
        auto problems = check_host(config);
        for (const auto& p : problems) std::cerr << "dingbridge-agent: " << p << "\n";
        if (!problems.empty()) return 2;
        std::cout << "configuration: ok (" << config_path << ", " << config.mapping_file << ")\n";
        if (!online) return 0;
        return check_online(config, std::cout, &*mapping) ? 0 : 1;
    }

    if (!*history) {
        if (auto refuse = root_on_service_state(config)) {
            std::cerr << "dingbridge-agent: " << *refuse << "\n";
            return 1;
        }
        auto problems = check_writable(config);
        for (const auto& p : problems) std::cerr << "dingbridge-agent: permission problem: " << p << "\n";
        if (!problems.empty()) return 1;
    }
    try {
        std::filesystem::create_directories(config.state_dir);
        HistoryStore store((std::filesystem::path(config.state_dir) / "state.db").string());
        if (*history) {
            if (*show) {
                auto r = store.get(show_id);
                if (!r) {
                    std::cerr << "dingbridge-agent: no run " << show_id << "\n";
                    return 1;
                }
                if (json)
                    std::cout << run_to_json(*r, true) << "\n";
                else
                    print_run(*r, true);
                return 0;
            }
            auto runs = store.list(limit);
            std::int64_t calls = 0, calls_full = 0, calls_event = 0;
            {
                events::Journal journal((std::filesystem::path(config.state_dir) / "state.db").string());
                auto month = events::Journal::this_month();
                calls = journal.calls_in_month(month);
                calls_full = journal.calls_in_month(month, "full");
                calls_event = journal.calls_in_month(month, "event");
            }
            if (json) {
                std::cout << "[";
                for (size_t i = 0; i < runs.size(); ++i) std::cout << (i ? "," : "") << run_to_json(runs[i], false);
                std::cout << "]\n";
            } else {
                std::cout << "calls this month: " << calls << " (full syncs " << calls_full << ", events "
                          << calls_event << ")";
                if (config.monthly_call_budget > 0)
                    std::cout << " of dingtalk.monthly_call_budget " << config.monthly_call_budget;
                std::cout << "\n";
                if (runs.empty()) std::cout << "no runs yet\n";
                for (const auto& r : runs) print_run(r, false);
            }
            return 0;
        }
        // One sync at a time per state directory.
        std::string lock_path = (std::filesystem::path(config.state_dir) / "agent.lock").string();
        int lock_fd = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
        if (lock_fd < 0) {
            std::cerr << "dingbridge-agent: permission problem: cannot open " << lock_path << ": "
                      << std::strerror(errno) << "\n";
            return 1;
        }
        if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK)
                std::cerr << "dingbridge-agent: another sync is running on " << config.state_dir << "\n";
            else
                std::cerr << "dingbridge-agent: cannot lock " << lock_path << ": " << std::strerror(errno) << "\n";
            return 1;
        }
        std::unique_ptr<Target> target;
        if (config.target_type == "ldap")
            target = make_ldap_target(config.ldap);
        else if (config.target_type == "scim")
            target = make_scim_target(config.scim, mapping->conflict_policy());
        else
            target = std::make_unique<SqliteTarget>(config.target_path);
        if (*run) return run_agent(config, *mapping, *target, store, std::cout);
        SyncOptions options;
        options.dry_run = dry_run;
        options.force = force;
        SyncResult r = run_full_sync(config, *mapping, *target, store, options, std::cout);
        // Every DingTalk call spends the month's quota, a sync run by hand or by the timer too:
        // counted with run mode's calls, so `history` and the reconcile budget see them.
        if (r.run_id != 0) {
            auto rec = store.get(r.run_id);
            if (rec && rec->counters.requests > 0) try {
                    events::Journal((std::filesystem::path(config.state_dir) / "state.db").string())
                        .add_calls(rec->counters.requests, "full");
                } catch (const std::exception& e) {
                    spdlog::warn("run {}: its DingTalk calls could not be counted: {}", r.run_id, e.what());
                }
        }
        if (r.run_id == 0)
            std::cerr << "dingbridge-agent: sync " << run_status_name(r.status) << ": " << r.message << "\n";
        else
            std::cout << "run " << r.run_id << ": " << run_status_name(r.status) << ": " << r.message << "\n";
        return r.exit_code();
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << redact(e.what(), config.secrets()) << "\n";
        return 1;
    }
}
