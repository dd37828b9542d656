#include "agent/run.h"

#include <malloc.h>
#include <semaphore.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <thread>

#include "agent/events/http_server.h"
#include "agent/events/journal.h"
#include "agent/events/processor.h"
#include "agent/events/push.h"
#include "agent/events/stream.h"
#include "agent/sync/full_sync.h"
#include "agent/web/console.h"
#include "shared/log.h"

namespace dingbridge::agent {

using namespace events;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> g_stop{false};
// Objects fetched per batch: a burst (fetched at DingTalk's per-API rate) commits in steps
// instead of all at its end. Every pending row about those objects joins the batch (one fetch
// covers them all: it happens after they were journaled).
constexpr std::size_t kBatchObjects = 100;
constexpr int kPendingWindow = 20000;
// A DingTalk push is a few hundred bytes; anything much larger is refused (413) unread.
constexpr std::size_t kPushBodyLimit = 64 * 1024;

std::vector<std::string> row_objects(const JournalEvent& r) {
    std::vector<std::string> out;
    for (const auto& u : r.user_ids) out.push_back("u:" + u);
    for (const auto& d : r.dept_ids) out.push_back("d:" + d);
    return out;
}

// The next batch: the oldest rows up to kBatchObjects distinct objects, plus every later
// pending row whose objects are all among them.
std::vector<JournalEvent> next_batch(std::vector<JournalEvent>&& pending) {
    std::set<std::string> objects;
    std::size_t prefix = 0;
    for (; prefix < pending.size(); ++prefix) {
        auto objs = row_objects(pending[prefix]);
        std::size_t added = 0;
        for (const auto& o : objs) added += objects.count(o) ? 0 : 1;
        if (prefix > 0 && objects.size() + added > kBatchObjects) break;
        objects.insert(objs.begin(), objs.end());
    }
    std::vector<JournalEvent> batch;
    for (std::size_t i = 0; i < pending.size(); ++i) {
        bool in = i < prefix;
        if (!in) {
            auto objs = row_objects(pending[i]);
            in = !objs.empty() &&
                 std::all_of(objs.begin(), objs.end(), [&](const std::string& o) { return objects.count(o) > 0; });
        }
        if (in) batch.push_back(std::move(pending[i]));
    }
    return batch;
}
void on_signal(int) { g_stop = true; }

// SIGHUP (log rotation): log.file is reopened at once by a thread of its own, whatever the main
// loop is doing (a reconcile can take minutes). The handler only posts a semaphore
// (async-signal-safe); the handler stays process-wide, so SIGHUP never ends the process whichever
// thread it is delivered to.
sem_t g_hup;
void on_hup(int) { sem_post(&g_hup); }

class LogReopener {
public:
    explicit LogReopener(LogSettings settings) : settings_(std::move(settings)) {
        sem_init(&g_hup, 0, 0);
        std::signal(SIGHUP, on_hup);
        thread_ = std::thread([this] {
            while (true) {
                while (sem_wait(&g_hup) != 0 && errno == EINTR) {
                }
                if (stop_.load()) return;
                reopen_log(settings_, "run");
            }
        });
    }
    ~LogReopener() {
        std::signal(SIGHUP, SIG_IGN);  // from here on a late SIGHUP changes nothing
        stop_ = true;
        sem_post(&g_hup);
        thread_.join();
    }
    LogReopener(const LogReopener&) = delete;
    LogReopener& operator=(const LogReopener&) = delete;

private:
    LogSettings settings_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// Wakes the main loop when the receiving thread journaled something.
struct Notifier {
    std::mutex mu;
    std::condition_variable cv;
    bool pending = false;
    void notify() {
        {
            std::lock_guard lock(mu);
            pending = true;
        }
        cv.notify_one();
    }
    void wait(std::chrono::milliseconds d) {
        std::unique_lock lock(mu);
        cv.wait_for(lock, d, [this] { return pending || g_stop.load(); });
        pending = false;
    }
};

std::int64_t parse_i64(const std::optional<std::string>& s) {
    if (!s) return 0;
    try {
        return std::stoll(*s);
    } catch (...) {
        return 0;
    }
}

// What a full sync and a reconcile need.
struct SyncContext {
    const AgentConfig& config;
    const Mapping& mapping;
    Target& target;
    HistoryStore& history;
    std::ostream& out;
    EventProcessor& processor;
    Journal& journal;
};

// ---- full sync (first start, long absence, schedule) ----
bool full_sync(SyncContext& c, const std::string& trigger) {
    std::int64_t started = now_ms();
    SyncOptions o;
    o.trigger = trigger;
    SyncResult r = run_full_sync(c.config, c.mapping, c.target, c.history, o, c.out);
    c.processor.invalidate(r.outside_departments);
    // 90020 in a full sync stops the month's calls as it does in an event batch: no reconcile
    // (hourly otherwise) and no batch asks DingTalk again before the month turns.
    if (r.quota_exhausted) c.processor.note_quota_exhausted();
    std::int64_t calls = 0;
    std::set<std::string> failed_users, failed_depts;
    // A department the sync could not read left its members as they were, and which users those
    // are is not known here: then no row counts as covered (the event path reads their objects).
    bool failed_other = false;
    if (auto rec = c.history.get(r.run_id)) {
        calls = rec->counters.requests;
        for (const auto& item : rec->items) {
            if (item.phase == "plan") continue;  // a skip or conflict: the sync's decision, not a failure
            if (item.object_type == "user")
                failed_users.insert(item.external_id);
            else if (item.object_type == "department" && item.phase == "apply")
                failed_depts.insert(item.external_id);
            else
                failed_other = true;
        }
    }
    (void)c.journal.add_calls(calls, "full");
    if (r.status == RunStatus::succeeded || r.status == RunStatus::partial) {
        c.journal.set("reconcile_failures", "");
        c.journal.set("last_full_ms", std::to_string(started));
        remember_full_sync_cost(c.journal, calls);
        // Every event received before this read began is covered by it, except those about an
        // object this run failed to read or write: they stay pending for the event path.
        (void)c.journal.mark_covered_by_full(started, r.run_id, failed_users, failed_depts, failed_other);
        return true;
    }
    // Retry later, not in a loop, and not at the price of a full read every hour: a sync the
    // safeguard stopped stops again until someone acts (sync --force, a larger max_deletes), so
    // it waits a whole reconcile_interval; any other failure waits 1 h, then 2, 4, ... up to it.
    c.journal.set("reconcile_deferred_ms", std::to_string(now_ms()));
    const std::int64_t failures = parse_i64(c.journal.get("reconcile_failures"));
    c.journal.set("reconcile_failures", r.status == RunStatus::aborted
                                            ? std::string("aborted")
                                            : std::to_string(std::max<std::int64_t>(0, failures) + 1));
    return false;
}

void reconcile(SyncContext& c, const std::string& trigger, bool forced) {
    if (auto over = forced ? std::nullopt : full_sync_over_budget(c.config, c.journal)) {
        std::string msg = "reconcile deferred: " + *over;
        spdlog::warn("{}", msg);
        auto id = c.history.start_run("full", trigger, false);
        Status stored = id ? c.history.finish_run(*id, run_status_name(RunStatus::deferred), msg, RunCounters{})
                           : Status(fail(id.error()));
        if (!stored) spdlog::warn("cannot record the deferral in the history: {}", stored.error());
        c.journal.set("reconcile_deferred_ms", std::to_string(now_ms()));
        return;
    }
    if (c.journal.get("quota_exhausted_month").value_or("") == Journal::this_month()) {
        spdlog::warn("reconcile skipped: DingTalk's monthly quota is used up (90020) until next month");
        c.journal.set("reconcile_deferred_ms", std::to_string(now_ms()));
        return;
    }
    (void)full_sync(c, trigger);
    // Everything the full sync held (tens of MiB for a large org) is freed by now, but malloc
    // keeps the pages for later allocations; `run` lives on with a small working set, so they
    // are given back to the system.
    malloc_trim(0);
}

// Journals a received event on `journal` and wakes the main loop; `answer` names what the sender
// is told when the event cannot be journaled.
auto journal_event(std::shared_ptr<Journal> journal, Notifier& notifier, const char* answer) {
    return [journal, &notifier, answer](JournalEvent&& e) {
        std::string error;
        e.received_ms = now_ms();
        auto r = journal->record(e, error);
        if (r == RecordResult::error) {
            spdlog::error("journal: cannot record event {}: {} (answered {})", e.dedup_key, error, answer);
            return false;
        }
        if (r == RecordResult::inserted) {
            failpoint("after-journal");
            notifier.notify();
        }
        return true;
    };
}

std::unique_ptr<StreamClient> start_stream(const AgentConfig& config, const std::string& db_path, Notifier& notifier) {
    StreamSettings ss;
    ss.api_base = config.api_base_url;
    ss.app_key = config.client.app_key;
    ss.app_secret = config.client.app_secret;
    ss.transport = config.client.transport;
    ss.backoff_min = config.events.reconnect_min;
    ss.backoff_max = config.events.reconnect_max;
    ss.idle_timeout = config.events.keepalive;
    auto stream_journal = std::make_shared<Journal>(db_path);
    auto stream = std::make_unique<StreamClient>(ss, journal_event(stream_journal, notifier, "LATER"));
    stream->start();
    return stream;
}

void start_push(const AgentConfig& config, const std::string& db_path, Notifier& notifier,
                std::unique_ptr<PushReceiver>& push, std::unique_ptr<HttpServer>& push_server) {
    PushSettings ps;
    ps.path = config.events.push_path;
    ps.token = config.events.push_token;
    ps.aes_key = config.events.push_aes_key;
    ps.owner_key = config.events.push_owner_key.empty() ? config.client.app_key : config.events.push_owner_key;
    ps.max_skew = config.events.push_max_skew;
    // The server thread's own connection (the receiver journals on it, before answering).
    auto push_journal = std::make_shared<Journal>(db_path);
    push = std::make_unique<PushReceiver>(ps, journal_event(push_journal, notifier, "503"));
    push_server = std::make_unique<HttpServer>(
        "events.push_listen", config.events.push_listen, [&push](const HttpRequestView& r) { return push->handle(r); },
        kPushBodyLimit);
    push_server->start();
    spdlog::info("run: receiving DingTalk's HTTP push on {} (port {}) at {}", config.events.push_listen,
                 push_server->port(), config.events.push_path);
}

// The gauges /metrics shows that the main loop refreshes.
struct LiveGauges {
    std::atomic<std::int64_t> calls_month;
    std::atomic<std::int64_t> last_full_s;
    std::atomic<std::int64_t> pending_rows;
};

std::string live_metrics_text(const AgentConfig& config, StreamClient* stream, const PushReceiver* push,
                              const ProcessorStats& pstats, const LiveGauges& g) {
    std::string body;
    {
        auto m = [&](const char* name, const char* type, const char* help, auto value) {
            body += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
                    std::to_string(value) + "\n";
        };
        std::uint64_t received = stream ? stream->stats().events.load() : (push ? push->stats().events.load() : 0);
        m("dingbridge_agent_events_received_total", "counter", "Events received from DingTalk.", received);
        m("dingbridge_agent_events_applied_total", "counter", "Journaled events applied to the target.",
          pstats.events_applied.load());
        m("dingbridge_agent_events_failed_total", "counter", "Event attempts that failed (retried later).",
          pstats.events_failed.load());
        m("dingbridge_agent_events_pending", "gauge", "Journaled events not applied yet.", g.pending_rows.load());
        m("dingbridge_agent_apply_lag_seconds", "gauge", "Journal to target commit time of the last batch.",
          static_cast<double>(pstats.last_lag_ms.load()) / 1000.0);
        // Stream mode only: in push mode there is no connection to lose, and a 0 there would
        // fire the shipped alert on stream_connected == 0 for ever.
        if (stream)
            m("dingbridge_agent_stream_connected", "gauge", "1 while the stream WebSocket is open.",
              stream->stats().connected.load() ? 1 : 0);
        m("dingbridge_agent_push_rejected_total", "counter",
          "HTTP pushes refused (4xx: unsigned, forged, stale, malformed).", push ? push->stats().rejected.load() : 0);
        m("dingbridge_agent_stream_reconnects_total", "counter", "Stream reconnections.",
          stream ? stream->stats().reconnects.load() : 0);
        m("dingbridge_agent_calls_this_month", "gauge", "Metered DingTalk calls this calendar month (UTC).",
          g.calls_month.load());
        m("dingbridge_agent_monthly_call_budget", "gauge", "dingtalk.monthly_call_budget (0 = unlimited).",
          config.monthly_call_budget);
        m("dingbridge_agent_last_full_sync_timestamp_seconds", "gauge", "When the last full sync started.",
          g.last_full_s.load());
        m("dingbridge_agent_quota_exhausted", "gauge", "1 after DingTalk answered 90020 this month.",
          pstats.quota_exhausted.load() ? 1 : 0);
    }
    return body;
}

// /healthz and /metrics.
HttpReply status_reply(const HttpRequestView& r, StreamClient* stream, const std::function<std::string()>& metrics) {
    HttpReply rep;
    if (r.method != "GET" && r.method != "HEAD")
        return HttpReply{405, "text/plain; charset=utf-8", "GET only\n", "GET, HEAD"};
    const bool connected = !stream || stream->stats().connected.load();
    if (r.target == "/healthz") {
        rep.status = connected ? 200 : 503;
        rep.body = connected ? "ok\n" : "stream not connected\n";
        return rep;
    }
    if (r.target != "/metrics") return HttpReply{404, "text/plain; charset=utf-8", "not found\n", {}};
    rep.content_type = "text/plain; version=0.0.4; charset=utf-8";
    rep.body = metrics();
    return rep;
}

// A first full sync, or one to catch up after a long absence.
void reconcile_on_start(SyncContext& c) {
    std::int64_t last_full = parse_i64(c.journal.get("last_full_ms"));
    std::int64_t last_alive = parse_i64(c.journal.get("last_alive_ms"));
    if (last_full == 0) {
        spdlog::info("run: no full sync yet; reading the whole organization once before following events");
        reconcile(c, "first-start", true);
    } else if (last_alive > 0 && now_ms() - last_alive > c.config.events.catch_up_after.count() * 1000) {
        spdlog::info("run: the agent was away for {} s (more than events.catch_up_after): catching up with a full sync",
                     (now_ms() - last_alive) / 1000);
        reconcile(c, "catch-up", false);
    }
}

// Applies the pending rows batch by batch; sets `retry_at` when some must wait.
void apply_pending(Journal& journal, EventProcessor& processor, const ProcessorStats& pstats,
                   Clock::time_point& retry_at) {
    for (;;) {
        auto pending = journal.pending(kPendingWindow);
        if (pending.empty()) break;
        const std::size_t pending_n = pending.size();
        auto rows = next_batch(std::move(pending));
        auto o = processor.process(rows);
        // A batch that settled no row (its marks failed to write) is not picked again at once:
        // the same rows would come back and the loop would spin without end.
        if (o.retry_later || o.handled == 0) {
            retry_at = Clock::now() + std::chrono::seconds(pstats.quota_exhausted ? 3600 : 5);
            break;
        }
        if (rows.size() == pending_n || g_stop) break;
    }
}

bool reconcile_due(const AgentConfig& config, Journal& journal) {
    const std::int64_t interval_ms = config.events.reconcile_interval.count() * 1000;
    std::int64_t since_full = now_ms() - parse_i64(journal.get("last_full_ms"));
    std::int64_t deferred = parse_i64(journal.get("reconcile_deferred_ms"));
    // After a deferral (budget, quota) or a failed reconcile: 1 h, doubling with each failure in
    // a row, at most the interval; after a safeguard abort the whole interval (full_sync).
    const std::string failures = journal.get("reconcile_failures").value_or("");
    std::int64_t wait_ms = std::min<std::int64_t>(interval_ms, 3600000);
    if (failures == "aborted")
        wait_ms = interval_ms;
    else
        for (std::int64_t n = parse_i64(failures); n > 1 && wait_ms < interval_ms; --n)
            wait_ms = std::min(interval_ms, wait_ms * 2);
    return interval_ms > 0 && since_full >= interval_ms && now_ms() - deferred >= wait_ms;
}

}  // namespace

std::optional<std::string> full_sync_over_budget(const AgentConfig& config, Journal& journal) {
    if (config.monthly_call_budget <= 0) return std::nullopt;
    const std::int64_t estimate = parse_i64(journal.get("last_full_calls"));
    const std::int64_t left = config.monthly_call_budget - journal.calls_in_month(Journal::this_month());
    const std::string budget = " of dingtalk.monthly_call_budget (" + std::to_string(config.monthly_call_budget) + ")";
    if (left <= 0)
        return "the month's calls have reached" + budget + " (" + std::to_string(config.monthly_call_budget - left) +
               " counted this month)";
    if (estimate > left)
        return "it would cost about " + std::to_string(estimate) + " calls and only " + std::to_string(left) + budget +
               " are left this month";
    return std::nullopt;
}

void remember_full_sync_cost(Journal& journal, std::int64_t calls) {
    journal.set("last_full_calls", std::to_string(calls));
}

void prune_state(const AgentConfig& config, HistoryStore& history, Journal& journal) {
    if (config.history_keep.count() <= 0) return;
    auto runs = history.prune(config.history_keep);
    if (!runs) spdlog::warn("history_keep: cannot delete old runs: {}", runs.error());
    // A journal row is what refuses a replayed push, and a signed push is accepted until its
    // timestamp is push_max_skew old, up to push_max_skew after it arrived (a clock ahead):
    // events are kept that long even when history_keep is shorter.
    const auto events_keep = std::max(config.history_keep, 2 * config.events.push_max_skew);
    const std::int64_t rows = journal.prune(now_ms() - events_keep.count() * 1000);
    if ((runs && *runs > 0) || rows > 0)
        spdlog::info("history_keep: deleted {} runs and {} events older than {} days", runs ? *runs : 0, rows,
                     config.history_keep.count() / 86400);
}

int run_agent(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
              std::ostream& out) {
    const std::string db_path = (std::filesystem::path(config.state_dir) / "state.db").string();
    Journal journal(db_path);
    ProcessorStats pstats;
    EventProcessor processor(config, mapping, target, history, journal, pstats);
    Notifier notifier;
    SyncContext sync_ctx{config, mapping, target, history, out, processor, journal};

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    LogReopener reopener(config.log);

    // ---- receiving (started first: events that arrive during a full sync are journaled) ----
    std::unique_ptr<StreamClient> stream;
    if (config.events.mode == "stream") stream = start_stream(config, db_path, notifier);
    std::unique_ptr<PushReceiver> push;
    std::unique_ptr<HttpServer> push_server;
    if (config.events.mode == "http") start_push(config, db_path, notifier, push, push_server);

    // ---- /healthz and /metrics ----
    LiveGauges gauges{{journal.calls_in_month(Journal::this_month())},
                      {parse_i64(journal.get("last_full_ms")) / 1000},
                      {journal.pending_count()}};
    auto live_metrics = [&] { return live_metrics_text(config, stream.get(), push.get(), pstats, gauges); };
    std::unique_ptr<HttpServer> status;
    if (!config.events.status_listen.empty()) {
        status = std::make_unique<HttpServer>(
            "events.status_listen", config.events.status_listen, [&](const HttpRequestView& r) {
                return status_reply(r, stream.get(),
                                    [&] { return live_metrics() + web::history_metrics(config, db_path, false); });
            });
        status->start();
        spdlog::info("run: /healthz and /metrics on {} (port {})", config.events.status_listen, status->port());
    }

    // ---- the read-only web console (web.listen), with this process's live state ----
    auto console_ctx = web::make_context(config);
    console_ctx.live = [&] {
        return web::LiveState{config.events.mode, !stream || stream->stats().connected.load(),
                              stream ? stream->stats().events.load() : (push ? push->stats().events.load() : 0),
                              static_cast<double>(pstats.last_lag_ms.load()) / 1000.0};
    };
    console_ctx.live_metrics = live_metrics;
    auto console = web::start_console(console_ctx);

    reconcile_on_start(sync_ctx);

    spdlog::info("run: following DingTalk events ({} mode)", config.events.mode);

    // ---- applying ----
    auto next_alive = Clock::now();
    auto next_prune = Clock::now() + std::chrono::hours(24);  // the first at start, below
    prune_state(config, history, journal);
    auto retry_at = Clock::time_point{};
    auto next_full_for_events = Clock::time_point{};
    while (!g_stop) {
        notifier.wait(std::chrono::milliseconds(1000));
        if (g_stop) break;
        auto now = Clock::now();
        if (now >= next_alive) {
            journal.set("last_alive_ms", std::to_string(now_ms()));
            next_alive = now + std::chrono::seconds(30);
        }
        if (now >= next_prune) {
            prune_state(config, history, journal);
            next_prune = now + std::chrono::hours(24);
        }
        if (now >= retry_at && journal.pending_count() > 0) {
            // Coalesce: let a burst finish arriving, then fetch each object once.
            std::this_thread::sleep_for(config.events.coalesce);
            // Events that would read more objects by id than the last full sync cost calls (a bulk
            // import, one event listing thousands of ids) are read for less by a full sync, which
            // settles every row received before it began. Counted as the event path would read
            // them (role changes, removals of objects never synced cost nothing there). Once an
            // hour at most: one that fails is not repeated at each wake, and the rows are then
            // read by id as usual.
            const std::int64_t full_cost = parse_i64(journal.get("last_full_calls"));
            if (Clock::now() >= next_full_for_events && full_cost > 0 &&
                static_cast<std::int64_t>(processor.reads_needed(journal.pending(kPendingWindow))) > full_cost &&
                !full_sync_over_budget(config, journal)) {
                spdlog::info(
                    "run: the pending events would read more objects than a full sync costs calls ({}): "
                    "reading the whole organization instead",
                    full_cost);
                next_full_for_events = Clock::now() + std::chrono::hours(1);
                reconcile(sync_ctx, "events", false);
            }
            apply_pending(journal, processor, pstats, retry_at);
        }
        gauges.calls_month = journal.calls_in_month(Journal::this_month());
        gauges.last_full_s = parse_i64(journal.get("last_full_ms")) / 1000;
        gauges.pending_rows = journal.pending_count();
        // Scheduled reconcile.
        if (reconcile_due(config, journal)) reconcile(sync_ctx, "schedule", false);
    }
    spdlog::info("run: stopping");
    if (stream) stream->stop();
    if (push_server) push_server->stop();
    if (status) status->stop();
    if (console) console->stop();
    journal.set("last_alive_ms", std::to_string(now_ms()));
    return 0;
}

}  // namespace dingbridge::agent
