#include "agent/run.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>

#include "agent/events/http_server.h"
#include "agent/events/journal.h"
#include "agent/events/processor.h"
#include "agent/events/push.h"
#include "agent/events/stream.h"
#include "agent/sync/full_sync.h"
#include "agent/web/console.h"

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

}  // namespace

int run_agent(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
              std::ostream& out) {
    const std::string db_path = (std::filesystem::path(config.state_dir) / "state.db").string();
    Journal journal(db_path);
    ProcessorStats pstats;
    EventProcessor processor(config, mapping, target, history, journal, pstats);
    Notifier notifier;

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    // ---- full sync (first start, long absence, schedule) ----
    auto full_sync = [&](const std::string& trigger) -> bool {
        std::int64_t started = now_ms();
        SyncOptions o;
        o.trigger = trigger;
        SyncResult r = run_full_sync(config, mapping, target, history, o, out);
        processor.invalidate();
        std::int64_t calls = 0;
        if (auto rec = history.get(r.run_id)) calls = rec->counters.requests;
        journal.add_calls(calls, "full");
        if (r.status == RunStatus::succeeded || r.status == RunStatus::partial) {
            journal.set("last_full_ms", std::to_string(started));
            journal.set("last_full_calls", std::to_string(calls));
            // Every event received before this read began is covered by it.
            (void)journal.mark_covered_by_full(started, r.run_id);
            return true;
        }
        journal.set("reconcile_deferred_ms", std::to_string(now_ms()));  // retry later, not in a loop
        return false;
    };
    auto budget_left = [&]() -> std::int64_t {
        if (config.monthly_call_budget <= 0) return INT64_MAX;
        return config.monthly_call_budget - journal.calls_in_month(Journal::this_month());
    };
    auto reconcile = [&](const std::string& trigger, bool forced) {
        std::int64_t estimate = parse_i64(journal.get("last_full_calls"));
        if (!forced && estimate > 0 && estimate > budget_left()) {
            std::string msg = "reconcile deferred: it would cost about " + std::to_string(estimate) +
                              " calls and only " + std::to_string(std::max<std::int64_t>(0, budget_left())) +
                              " of dingtalk.monthly_call_budget (" + std::to_string(config.monthly_call_budget) +
                              ") are left this month";
            spdlog::warn("{}", msg);
            auto id = history.start_run("full", trigger, false);
            Status stored = id ? history.finish_run(*id, run_status_name(RunStatus::deferred), msg, RunCounters{})
                               : Status(fail(id.error()));
            if (!stored) spdlog::warn("cannot record the deferral in the history: {}", stored.error());
            journal.set("reconcile_deferred_ms", std::to_string(now_ms()));
            return;
        }
        if (journal.get("quota_exhausted_month").value_or("") == Journal::this_month()) {
            spdlog::warn("reconcile skipped: DingTalk's monthly quota is used up (90020) until next month");
            journal.set("reconcile_deferred_ms", std::to_string(now_ms()));
            return;
        }
        (void)full_sync(trigger);
    };

    // ---- receiving (started first: events that arrive during a full sync are journaled) ----
    std::unique_ptr<StreamClient> stream;
    if (config.events.mode == "stream") {
        StreamSettings ss;
        ss.api_base = config.api_base_url;
        ss.app_key = config.client.app_key;
        ss.app_secret = config.client.app_secret;
        ss.transport = config.client.transport;
        ss.backoff_min = config.events.reconnect_min;
        ss.backoff_max = config.events.reconnect_max;
        ss.idle_timeout = config.events.keepalive;
        auto stream_journal = std::make_shared<Journal>(db_path);
        stream = std::make_unique<StreamClient>(ss, [stream_journal, &notifier](JournalEvent&& e) {
            std::string error;
            e.received_ms = now_ms();
            auto r = stream_journal->record(e, error);
            if (r == RecordResult::error) {
                spdlog::error("journal: cannot record event {}: {} (answered LATER)", e.dedup_key, error);
                return false;
            }
            if (r == RecordResult::inserted) {
                failpoint("after-journal");
                notifier.notify();
            }
            return true;
        });
        stream->start();
    }
    std::unique_ptr<PushReceiver> push;
    std::unique_ptr<HttpServer> push_server;
    if (config.events.mode == "http") {
        PushSettings ps;
        ps.path = config.events.push_path;
        ps.token = config.events.push_token;
        ps.aes_key = config.events.push_aes_key;
        ps.owner_key = config.events.push_owner_key.empty() ? config.client.app_key : config.events.push_owner_key;
        ps.max_skew = config.events.push_max_skew;
        // The server thread's own connection (the receiver journals on it, before answering).
        auto push_journal = std::make_shared<Journal>(db_path);
        push = std::make_unique<PushReceiver>(ps, [push_journal, &notifier](JournalEvent&& e) {
            std::string error;
            e.received_ms = now_ms();
            auto r = push_journal->record(e, error);
            if (r == RecordResult::error) {
                spdlog::error("journal: cannot record event {}: {} (answered 503)", e.dedup_key, error);
                return false;
            }
            if (r == RecordResult::inserted) {
                failpoint("after-journal");
                notifier.notify();
            }
            return true;
        });
        push_server = std::make_unique<HttpServer>(
            config.events.push_listen, [&push](const HttpRequestView& r) { return push->handle(r); }, kPushBodyLimit);
        push_server->start();
        spdlog::info("run: receiving DingTalk's HTTP push on {} (port {}) at {}", config.events.push_listen,
                     push_server->port(), config.events.push_path);
    }

    // ---- /healthz and /metrics ----
    std::atomic<std::int64_t> calls_month{journal.calls_in_month(Journal::this_month())};
    std::atomic<std::int64_t> last_full_s{parse_i64(journal.get("last_full_ms")) / 1000};
    std::atomic<std::int64_t> pending_rows{journal.pending_count()};
    auto live_metrics = [&] {
        std::string body;
        {
            auto m = [&](const char* name, const char* type, const char* help, auto value) {
                body += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name +
                        " " + std::to_string(value) + "\n";
            };
            std::uint64_t received = stream ? stream->stats().events.load() : (push ? push->stats().events.load() : 0);
            m("dingbridge_agent_events_received_total", "counter", "Events received from DingTalk.", received);
            m("dingbridge_agent_events_applied_total", "counter", "Journaled events applied to the target.",
              pstats.events_applied.load());
            m("dingbridge_agent_events_failed_total", "counter", "Event attempts that failed (retried later).",
              pstats.events_failed.load());
            m("dingbridge_agent_events_pending", "gauge", "Journaled events not applied yet.", pending_rows.load());
            m("dingbridge_agent_apply_lag_seconds", "gauge", "Journal to target commit time of the last batch.",
              static_cast<double>(pstats.last_lag_ms.load()) / 1000.0);
            m("dingbridge_agent_stream_connected", "gauge", "1 while the stream WebSocket is open.",
              stream && stream->stats().connected.load() ? 1 : 0);
            m("dingbridge_agent_push_rejected_total", "counter",
              "HTTP pushes refused (4xx: unsigned, forged, stale, malformed).",
              push ? push->stats().rejected.load() : 0);
            m("dingbridge_agent_stream_reconnects_total", "counter", "Stream reconnections.",
              stream ? stream->stats().reconnects.load() : 0);
            m("dingbridge_agent_calls_this_month", "gauge", "Metered DingTalk calls this calendar month (UTC).",
              calls_month.load());
            m("dingbridge_agent_monthly_call_budget", "gauge", "dingtalk.monthly_call_budget (0 = unlimited).",
              config.monthly_call_budget);
            m("dingbridge_agent_last_full_sync_timestamp_seconds", "gauge", "When the last full sync started.",
              last_full_s.load());
            m("dingbridge_agent_quota_exhausted", "gauge", "1 after DingTalk answered 90020 this month.",
              pstats.quota_exhausted.load() ? 1 : 0);
        }
        return body;
    };
    std::unique_ptr<HttpServer> status;
    if (!config.events.status_listen.empty()) {
        status = std::make_unique<HttpServer>(config.events.status_listen, [&](const HttpRequestView& r) {
            HttpReply rep;
            if (r.method != "GET") return HttpReply{405, "text/plain; charset=utf-8", "GET only\n"};
            const bool connected = !stream || stream->stats().connected.load();
            if (r.target == "/healthz") {
                rep.status = connected ? 200 : 503;
                rep.body = connected ? "ok\n" : "stream not connected\n";
                return rep;
            }
            if (r.target != "/metrics") return HttpReply{404, "text/plain; charset=utf-8", "not found\n"};
            rep.content_type = "text/plain; version=0.0.4; charset=utf-8";
            rep.body = live_metrics() + web::history_metrics(config, db_path, false);
            return rep;
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

    std::int64_t last_full = parse_i64(journal.get("last_full_ms"));
    std::int64_t last_alive = parse_i64(journal.get("last_alive_ms"));
    if (last_full == 0) {
        spdlog::info("run: no full sync yet; reading the whole organization once before following events");
        reconcile("first-start", true);
    } else if (last_alive > 0 && now_ms() - last_alive > config.events.catch_up_after.count() * 1000) {
        spdlog::info("run: the agent was away for {} s (more than events.catch_up_after): catching up with a full sync",
                     (now_ms() - last_alive) / 1000);
        reconcile("catch-up", false);
    }

    spdlog::info("run: following DingTalk events ({} mode)", config.events.mode);

    // ---- applying ----
    auto next_alive = Clock::now();
    auto retry_at = Clock::time_point{};
    while (!g_stop) {
        notifier.wait(std::chrono::milliseconds(1000));
        if (g_stop) break;
        auto now = Clock::now();
        if (now >= next_alive) {
            journal.set("last_alive_ms", std::to_string(now_ms()));
            next_alive = now + std::chrono::seconds(30);
        }
        if (now >= retry_at && journal.pending_count() > 0) {
            // Coalesce: let a burst finish arriving, then fetch each object once.
            std::this_thread::sleep_for(config.events.coalesce);
            for (;;) {
                auto pending = journal.pending(kPendingWindow);
                if (pending.empty()) break;
                const std::size_t pending_n = pending.size();
                auto rows = next_batch(std::move(pending));
                auto o = processor.process(rows);
                if (o.retry_later) {
                    retry_at = Clock::now() + std::chrono::seconds(pstats.quota_exhausted ? 3600 : 5);
                    break;
                }
                if (rows.size() == pending_n) break;
            }
        }
        calls_month = journal.calls_in_month(Journal::this_month());
        last_full_s = parse_i64(journal.get("last_full_ms")) / 1000;
        pending_rows = journal.pending_count();
        // Scheduled reconcile.
        std::int64_t since_full = now_ms() - parse_i64(journal.get("last_full_ms"));
        std::int64_t deferred = parse_i64(journal.get("reconcile_deferred_ms"));
        if (config.events.reconcile_interval.count() > 0 &&
            since_full >= config.events.reconcile_interval.count() * 1000 &&
            now_ms() - deferred >= std::min<std::int64_t>(config.events.reconcile_interval.count() * 1000, 3600000))
            reconcile("schedule", false);
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
