// Starting the console (run mode and `dingbridge-agent web`), its metrics read from the history,
// and `dingbridge-agent hash-password`.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "agent/events/journal.h"
#include "agent/web/console_parts.h"
#include "shared/log.h"
#include "shared/password.h"

namespace dingbridge::agent::web {

namespace {

std::string label_value(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string seconds_text(std::int64_t ms) {
    char b[64];
    std::snprintf(b, sizeof b, "%.3f", static_cast<double>(ms) / 1000.0);
    return b;
}

}  // namespace

std::string history_metrics(const AgentConfig& config, const std::string& state_db, bool with_calls) {
    HistoryView view(state_db);
    std::string out;
    auto family = [&](const char* name, const char* type, const char* help) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    auto sample = [&](const char* name, const std::string& value) { out += std::string(name) + " " + value + "\n"; };
    const Totals t = view.totals();
    family("dingbridge_agent_runs", "gauge", "Runs in the history, by kind (full, event) and status.");
    for (const auto& [key, n] : t.runs)
        out += "dingbridge_agent_runs{kind=\"" + label_value(key.first) + "\",status=\"" + label_value(key.second) +
               "\"} " + std::to_string(n) + "\n";
    family("dingbridge_agent_run_items_failed_total", "counter", "Items (objects or pages) that failed, all runs.");
    sample("dingbridge_agent_run_items_failed_total", std::to_string(t.items_failed));
    family("dingbridge_agent_safeguard_aborts_total", "counter",
           "Full syncs aborted because the removals exceeded safeguard.max_deletes.");
    sample("dingbridge_agent_safeguard_aborts_total", std::to_string(t.safeguard_aborts));
    family("dingbridge_agent_last_success_timestamp_seconds", "gauge",
           "When the newest succeeded run finished (0 = never).");
    sample("dingbridge_agent_last_success_timestamp_seconds", seconds_text(iso_to_ms(t.last_success)));
    const EventState e = view.events();
    family("dingbridge_agent_events_lag_seconds", "gauge",
           "Age of the oldest journaled event not applied yet (0 = none pending).");
    sample("dingbridge_agent_events_lag_seconds",
           seconds_text(e.oldest_pending_ms ? std::max<std::int64_t>(0, events::now_ms() - e.oldest_pending_ms) : 0));
    family("dingbridge_agent_last_event_timestamp_seconds", "gauge",
           "When the newest event was journaled (0 = never).");
    sample("dingbridge_agent_last_event_timestamp_seconds", seconds_text(e.newest_received_ms));
    if (!with_calls) return out;
    family("dingbridge_agent_calls_this_month", "gauge", "Metered DingTalk calls this calendar month (UTC).");
    sample("dingbridge_agent_calls_this_month", std::to_string(view.calls_in_month(events::Journal::this_month())));
    family("dingbridge_agent_monthly_call_budget", "gauge", "dingtalk.monthly_call_budget (0 = unlimited).");
    sample("dingbridge_agent_monthly_call_budget", std::to_string(config.monthly_call_budget));
    auto full = view.last_full();
    family("dingbridge_agent_last_full_sync_timestamp_seconds", "gauge", "When the last full sync started.");
    sample("dingbridge_agent_last_full_sync_timestamp_seconds", seconds_text(full ? iso_to_ms(full->started_at) : 0));
    return out;
}

ConsoleContext make_context(const AgentConfig& config) {
    ConsoleContext ctx;
    ctx.config = &config;
    ctx.state_db = (std::filesystem::path(config.state_dir) / "state.db").string();
    if (config.target_type == "sqlite") ctx.target_db = config.target_path;
    return ctx;
}

std::unique_ptr<WebServer> start_console(ConsoleContext ctx) {
    if (ctx.config->web.listen.empty()) return nullptr;
    const AgentConfig::Web& web = ctx.config->web;
    auto server = std::make_unique<WebServer>(web, [ctx](const WebRequest& r) { return handle_console(ctx, r); });
    server->start();
    if (web.passwords_in_clear)
        spdlog::warn(
            "web: {} is not loopback and has no web.tls: console passwords cross the network in clear "
            "(set web.tls, or listen on loopback behind a TLS front)",
            web.listen);
    spdlog::info("web: console on {}://{} (port {}; {})", server->tls() ? "https" : "http", web.listen, server->port(),
                 web.users.empty() && web.client_ca.empty() ? "loopback, no login" : "login required");
    return server;
}

int run_console_command(const AgentConfig& config) {
    if (config.web.listen.empty()) {
        std::cerr << "dingbridge-agent: web.listen is not set in " << config.file
                  << " (the console's address; see docs/console.md)\n";
        return 2;
    }
    // Signals are taken by sigwait below: block them before the server thread starts.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::unique_ptr<WebServer> server;
    try {
        server = start_console(make_context(config));
    } catch (const std::exception& e) {
        std::cerr << "dingbridge-agent: " << e.what() << "\n";
        return 1;
    }
    std::cout << "web console on " << (server->tls() ? "https" : "http") << "://" << config.web.listen << " (port "
              << server->port() << ")" << std::endl;
    int sig = 0;
    while (sigwait(&set, &sig) != 0 || sig == SIGHUP) {
        if (sig == SIGHUP) reopen_log(config.log, "web");
        sig = 0;
    }
    spdlog::info("web: stopping");
    server->stop();
    return 0;
}

int hash_password_command() {
    const bool tty = isatty(STDIN_FILENO) != 0;
    termios saved{};
    if (tty) {  // prompt without echo
        tcgetattr(STDIN_FILENO, &saved);
        termios quiet = saved;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
        std::cerr << "Password for the web console: " << std::flush;
    }
    std::string password;
    std::getline(std::cin, password);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        std::cerr << "\n";
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
        std::cerr << "dingbridge-agent: empty password refused\n";
        return 1;
    }
    std::cout << PasswordHash::create(password).to_string() << "\n";
    return 0;
}

}  // namespace dingbridge::agent::web
