// dingbridge-agent: parses the command line, loads agent.yaml and mapping.yaml, opens the state
// database and the target, and hands over to the full sync / history / doctor components.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

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

// The command line: the options and the subcommands that `main` dispatches on.
struct CommandLine {
    std::string config_path = "/etc/dingbridge/agent.yaml";
    bool dry_run = false, force = false, ignore_budget = false;
    bool json = false;
    int limit = 20;
    std::int64_t show_id = 0;
    bool online = false;
    CLI::App* sync = nullptr;
    CLI::App* run = nullptr;
    CLI::App* history = nullptr;
    CLI::App* show = nullptr;
    CLI::App* web = nullptr;
    CLI::App* hash_password = nullptr;
    CLI::App* check = nullptr;
};

void define_commands(CLI::App& app, CommandLine& cl) {
    app.add_option("-c,--config", cl.config_path, "agent.yaml (documented in configs/agent.yaml)");
    app.set_version_flag("--version", std::string("dingbridge-agent ") + DINGBRIDGE_VERSION);
    app.require_subcommand(0, 1);

    cl.sync = app.add_subcommand("sync", "Run a full sync now");
    cl.sync->add_flag("--dry-run", cl.dry_run, "Print the plan (counts, then each change) and apply nothing");
    cl.sync->add_flag("--force", cl.force, "Apply even when the removals exceed safeguard.max_deletes");
    cl.sync->add_flag("--ignore-budget", cl.ignore_budget,
                      "Read DingTalk even when dingtalk.monthly_call_budget cannot pay for this sync");

    cl.run = app.add_subcommand("run", "Follow DingTalk's events and apply them as they happen (the service)");

    cl.history = app.add_subcommand("history", "List recent runs, or show one with `history show ID`");
    cl.history->add_flag("--json", cl.json, "JSON output");
    cl.history->add_option("--limit", cl.limit, "How many runs to list")->check(CLI::Range(1, 1000000));
    cl.show = cl.history->add_subcommand("show", "One run with its failed and skipped items");
    cl.show->add_option("id", cl.show_id, "Run id")->required();
    cl.show->add_flag("--json", cl.json, "JSON output");

    cl.web = app.add_subcommand("web", "Serve the read-only web console and metrics alone (web: in agent.yaml)");
    cl.hash_password = app.add_subcommand(
        "hash-password", "Read a password (prompt or one line on stdin) and print the $scrypt$ hash for web.users");

    cl.check = app.add_subcommand("check-config", "Validate agent.yaml and mapping.yaml");
    cl.check->add_flag("--online", cl.online, "Also call DingTalk through the proxy and diagnose the path");
}

int no_command(CLI::App& app) {
    std::string names;
    for (const auto* sub : app.get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
    if (!app.remaining().empty())
        std::cerr << "dingbridge-agent: unknown command '" << app.remaining().front() << "' (commands: " << names
                  << "; see --help)\n";
    else
        std::cerr << "dingbridge-agent: a command is required: " << names << " (see --help)\n";
    return 2;
}

// check-config --online's calls are metered like any other: they go into the month's count in
// state.db, when the user running the check owns it (a root-owned WAL file beside the service's
// database would lock the service out).
void count_check_calls(const AgentConfig& config, std::int64_t calls) {
    if (calls <= 0) return;
    const std::string db = (std::filesystem::path(config.state_dir) / "state.db").string();
    struct stat st {};
    std::string why;
    if (::stat(db.c_str(), &st) != 0) {
        why = "there is no " + db + " yet";
    } else if (st.st_uid != ::geteuid()) {
        why = db + " belongs to another user (run the check as that user to count them)";
    } else {
        try {
            events::Journal journal(db);
            auto r = journal.add_calls(calls, "check");
            if (r) {
                std::cout << "DingTalk calls of this check: " << calls << " (counted in this month's calls)\n";
                return;
            }
            why = r.error();
        } catch (const std::exception& e) {
            why = e.what();
        }
    }
    std::cout << "DingTalk calls of this check: " << calls << " (not counted in this month's calls: " << why << ")\n";
}

int check_config_command(const AgentConfig& config, const CommandLine& cl, const std::optional<Mapping>& mapping) {
    auto problems = check_host(config);
    for (const auto& p : problems) std::cerr << "dingbridge-agent: " << p << "\n";
    if (!problems.empty()) return 2;
    std::cout << "configuration: ok (" << cl.config_path << ", " << config.mapping_file << ")\n";
    if (!cl.online) return 0;
    std::int64_t calls = 0;
    const bool ok = check_online(config, std::cout, &*mapping, &calls);
    count_check_calls(config, calls);
    return ok ? 0 : 1;
}

int history_command(const AgentConfig& config, HistoryStore& store, const CommandLine& cl) {
    if (*cl.show) {
        auto r = store.get(cl.show_id);
        if (!r) {
            std::cerr << "dingbridge-agent: no run " << cl.show_id << "\n";
            return 1;
        }
        if (cl.json)
            std::cout << run_to_json(*r, true) << "\n";
        else
            print_run(*r, true);
        return 0;
    }
    auto runs = store.list(cl.limit);
    std::int64_t calls = 0, calls_full = 0, calls_event = 0, calls_check = 0;
    {
        events::Journal journal((std::filesystem::path(config.state_dir) / "state.db").string());
        auto month = events::Journal::this_month();
        calls = journal.calls_in_month(month);
        calls_full = journal.calls_in_month(month, "full");
        calls_event = journal.calls_in_month(month, "event");
        calls_check = journal.calls_in_month(month, "check");
    }
    if (cl.json) {
        std::cout << "[";
        for (size_t i = 0; i < runs.size(); ++i) std::cout << (i ? "," : "") << run_to_json(runs[i], false);
        std::cout << "]\n";
    } else {
        std::cout << "calls this month: " << calls << " (full syncs " << calls_full << ", events " << calls_event;
        if (calls_check > 0) std::cout << ", check-config " << calls_check;
        std::cout << ")";
        if (config.monthly_call_budget > 0)
            std::cout << " of dingtalk.monthly_call_budget " << config.monthly_call_budget;
        std::cout << "\n";
        if (runs.empty()) std::cout << "no runs yet\n";
        for (const auto& r : runs) print_run(r, false);
    }
    return 0;
}

// One sync at a time per state directory: false (after saying why) when the lock is not ours.
// The descriptor stays open, and the lock held, until the process exits.
bool lock_state_dir(const AgentConfig& config) {
    std::string lock_path = (std::filesystem::path(config.state_dir) / "agent.lock").string();
    int lock_fd = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        std::cerr << "dingbridge-agent: permission problem: cannot open " << lock_path << ": " << std::strerror(errno)
                  << "\n";
        return false;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            std::cerr << "dingbridge-agent: another sync is running on " << config.state_dir << "\n";
        else
            std::cerr << "dingbridge-agent: cannot lock " << lock_path << ": " << std::strerror(errno) << "\n";
        return false;
    }
    return true;
}

std::unique_ptr<Target> open_target(const AgentConfig& config, const Mapping& mapping) {
    if (config.target_type == "ldap") return make_ldap_target(config.ldap);
    if (config.target_type == "scim") return make_scim_target(config.scim, mapping.conflict_policy());
    return std::make_unique<SqliteTarget>(config.target_path);
}

int sync_command(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& store,
                 const CommandLine& cl) {
    SyncOptions options;
    options.dry_run = cl.dry_run;
    options.force = cl.force;
    // The event journal's tables (the month's calls, journaled events), opened once for both uses.
    std::optional<events::Journal> journal;
    try {
        journal.emplace((std::filesystem::path(config.state_dir) / "state.db").string());
    } catch (const std::exception& e) {
        spdlog::warn("the state database's journal cannot be opened: {}", e.what());
    }
    if (!cl.dry_run && journal) prune_state(config, store, *journal);
    // A full read is the costly call pattern (a timer that syncs hourly spends a month's quota in
    // days): what the budget cannot pay waits, with a history run that says so, unless asked.
    if (auto over = journal && !cl.ignore_budget ? full_sync_over_budget(config, *journal) : std::nullopt) {
        const std::string msg = "sync deferred: " + *over + "; nothing was read (--ignore-budget syncs anyway)";
        auto id = store.start_run("full", "cli", cl.dry_run);
        Status stored = id ? store.finish_run(*id, run_status_name(RunStatus::deferred), msg, RunCounters{})
                           : Status(fail(id.error()));
        if (!stored) spdlog::warn("cannot record the deferral in the history: {}", stored.error());
        std::cerr << "dingbridge-agent: " << msg << "\n";
        return run_status_exit_code(RunStatus::deferred);
    }
    SyncResult r = run_full_sync(config, mapping, target, store, options, std::cout);
    // Every DingTalk call spends the month's quota, a sync run by hand or by the timer too:
    // counted with run mode's calls, so `history` and the reconcile budget see them.
    if (r.run_id != 0) {
        auto rec = store.get(r.run_id);
        if (rec && rec->counters.requests > 0) {
            if (journal) {
                (void)journal->add_calls(rec->counters.requests, "full");
                if (r.status == RunStatus::succeeded || r.status == RunStatus::partial)
                    remember_full_sync_cost(*journal, rec->counters.requests);
            } else
                spdlog::warn("run {}: its DingTalk calls could not be counted", r.run_id);
        }
    }
    if (r.run_id == 0)
        std::cerr << "dingbridge-agent: sync " << run_status_name(r.status) << ": " << r.message << "\n";
    else
        std::cout << "run " << r.run_id << ": " << run_status_name(r.status) << ": " << r.message << "\n";
    return r.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "dingbridge-agent: syncs a DingTalk organization (departments and users) through dingbridge-proxy "
        "into an identity directory. See docs/agent.md."};
    CommandLine cl;
    define_commands(app, cl);

    // A word that is no command is kept (not refused by CLI11 with "A subcommand is required"), so
    // that the error can name it. Set after the subcommands, which therefore still refuse extras.
    app.allow_extras();
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // A usage mistake is a mistake in what the operator asked for, like a configuration
        // error: exit 2 (CLI11's own codes, 104 to 109, mean nothing to a script or a unit).
        (void)app.exit(e);
        return 2;
    }
    if (app.get_subcommands().empty()) return no_command(app);

    if (*cl.hash_password) try {
            return web::hash_password_command();
        } catch (const std::exception& e) {
            std::cerr << "dingbridge-agent: " << e.what() << "\n";
            return 1;
        }

    AgentConfig config;
    std::optional<Mapping> mapping;
    try {
        // `history` and `web` only read the state database: no secret is needed (nor resolved).
        config = AgentConfig::load(
            cl.config_path, *cl.history || *cl.web ? AgentConfig::Secrets::leave : AgentConfig::Secrets::resolve);
        configure_logging(config.log);
        if (!*cl.history && !*cl.web) mapping = Mapping::load_file(config.mapping_file);
    } catch (const ConfigError& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 2;
    }

    if (*cl.web) return web::run_console_command(config);

    if (*cl.check) return check_config_command(config, cl, mapping);

    // Run mode patches the target's state read back with the objects each event names: a
    // directory without groups holds no memberships, so every user an event does not name would
    // look like a leaver.
    if (*cl.run && config.target_type == "ldap" && !config.ldap.groups()) {
        std::cerr << "dingbridge-agent: run needs target.ldap.group_class groupOfNames or groupOfUniqueNames (with "
                     "none the directory holds no memberships for the events to patch); use scheduled `sync`\n";
        return 2;
    }

    if (!*cl.history) {
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
        if (*cl.history) return history_command(config, store, cl);
        if (!lock_state_dir(config)) return 1;
        std::unique_ptr<Target> target = open_target(config, *mapping);
        if (*cl.run) return run_agent(config, *mapping, *target, store, std::cout);
        return sync_command(config, *mapping, *target, store, cl);
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << redact(e.what(), config.secrets()) << "\n";
        return 1;
    }
}
