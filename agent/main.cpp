// dingbridge-agent: parses the command line, loads agent.yaml and mapping.yaml, opens the state
// database and the target, and hands over to the full sync / history / doctor components.
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "agent/config.h"
#include "agent/doctor.h"
#include "agent/mapping/mapping.h"
#include "agent/run.h"
#include "agent/events/journal.h"
#include "agent/sync/full_sync.h"
#include "agent/sync/history.h"
#include "agent/targets/sqlite_target.h"
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
            std::cout << "  - [" << it.phase << "] " << it.object_type << " " << it.external_id << " " << it.operation
                      << ": " << it.error << "\n";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"dingbridge-agent: syncs a DingTalk organization (departments and users) through dingbridge-proxy "
                 "into an identity directory. See docs/agent.md."};
    std::string config_path = "/etc/dingbridge/agent.yaml";
    app.add_option("-c,--config", config_path, "agent.yaml (documented in configs/agent.yaml)");
    app.require_subcommand(1);

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

    auto* check = app.add_subcommand("check-config", "Validate agent.yaml and mapping.yaml");
    bool online = false;
    check->add_flag("--online", online, "Also call DingTalk through the proxy and diagnose the path");

    CLI11_PARSE(app, argc, argv);

    AgentConfig config;
    std::optional<Mapping> mapping;
    try {
        config = AgentConfig::load(config_path);
        configure_logging(config.log);
        mapping = Mapping::load_file(config.mapping_file);
    } catch (const ConfigError& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    }

    if (*check) {
        std::cout << "configuration: ok (" << config_path << ", " << config.mapping_file << ")\n";
        if (!online) return 0;
        return check_online(config, std::cout) ? 0 : 1;
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
                if (json) std::cout << run_to_json(*r, true) << "\n";
                else print_run(*r, true);
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
                std::cout << "calls this month: " << calls << " (full syncs " << calls_full << ", events " << calls_event
                          << ")";
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
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            std::cerr << "dingbridge-agent: another sync is running on " << config.state_dir << "\n";
            return 1;
        }
        SqliteTarget target(config.target_path);
        if (*run) return run_agent(config, *mapping, target, store, std::cout);
        SyncOptions options;
        options.dry_run = dry_run;
        options.force = force;
        SyncResult r = run_full_sync(config, *mapping, target, store, options, std::cout);
        std::cout << "run " << r.run_id << ": " << r.status << ": " << r.message << "\n";
        return r.exit_code();
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << redact(e.what(), config.secrets()) << "\n";
        return 1;
    }
}
