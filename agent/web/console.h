#pragma once
// The web console's pages, JSON endpoints and Prometheus metrics (docs/console.md). Everything
// is read from the state database through HistoryView (read-only) at each request; run mode adds
// what only its process knows (the stream's connection, events received) through `live`.
// Every value from the database is HTML-escaped where it is rendered; no configuration secret
// is ever read here (only counts, names, statuses and redacted error texts).

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "agent/config.h"
#include "agent/web/history_view.h"
#include "agent/web/web_server.h"

namespace dingbridge::agent::web {

struct LiveState {     // run mode only
    std::string mode;  // stream or http
    bool connected = false;
    std::uint64_t events_received = 0;
    double apply_lag_seconds = 0;
};

struct ConsoleContext {
    const AgentConfig* config = nullptr;
    std::string state_db, target_db;            // target_db: the SQLite target, for object names ("" = none)
    std::function<LiveState()> live;            // empty for `dingbridge-agent web`
    std::function<std::string()> live_metrics;  // run mode's own metrics text
};

ConsoleContext make_context(const AgentConfig& config);
WebReply handle_console(const ConsoleContext& ctx, const WebRequest& req);

// Metrics read from the history: runs by kind and status, items failed, last success, safeguard
// aborts, events lag; with_calls adds the month's calls, the budget and the last full sync (run
// mode's own /metrics already has those three).
std::string history_metrics(const AgentConfig& config, const std::string& state_db, bool with_calls);

// Starts the console when web.listen is set (nullptr otherwise); throws on startup problems.
std::unique_ptr<WebServer> start_console(ConsoleContext ctx);

// `dingbridge-agent web`: the console alone until SIGTERM/SIGINT (timer-driven installs).
int run_console_command(const AgentConfig& config);
// `dingbridge-agent hash-password`: one password (terminal prompt or a line on stdin) -> $scrypt$.
int hash_password_command();

// HTML text/attribute escaping of & < > " '.
std::string html_escape(const std::string& text);

}  // namespace dingbridge::agent::web
