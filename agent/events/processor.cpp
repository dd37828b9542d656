#include "agent/events/processor.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <set>

#include "agent/dingtalk/contacts_api.h"
#include "agent/dingtalk/explain.h"
#include "agent/events/event_parse.h"
#include "agent/events/patch.h"
#include "agent/sync/apply.h"
#include "agent/sync/run_reporter.h"

namespace dingbridge::agent::events {

using dingtalk::ApiFailure;
using dingtalk::FailureKind;

namespace {

std::optional<std::int64_t> to_id(const std::string& s) {
    std::int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v <= 0) return std::nullopt;
    return v;
}

}  // namespace

EventProcessor::EventProcessor(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                               Journal& journal, ProcessorStats& stats)
    : config_(config),
      mapping_(mapping),
      target_(target),
      history_(history),
      journal_(journal),
      stats_(stats),
      client_(config.client) {}

BatchOutcome EventProcessor::process(const std::vector<JournalEvent>& rows) {
    BatchOutcome out;
    if (rows.empty()) return out;
    const auto secrets = config_.secrets();
    // Which objects the batch is about; rows about nothing the sync keeps are done at once.
    std::set<std::string> users;
    std::set<std::int64_t> depts;
    std::vector<std::int64_t> nothing;
    std::map<std::int64_t, const JournalEvent*> by_id;
    for (const auto& r : rows) {
        by_id[r.id] = &r;
        std::string kind = event_object_kind(r.event_type);
        if (kind == "user") users.insert(r.user_ids.begin(), r.user_ids.end());
        if (kind == "department")
            for (const auto& d : r.dept_ids)
                if (auto id = to_id(d)) depts.insert(*id);
        if (kind.empty() || (r.user_ids.empty() && r.dept_ids.empty())) nothing.push_back(r.id);
    }
    if (!nothing.empty() && journal_.mark_done(nothing, 0)) out.handled += nothing.size();
    if (users.empty() && depts.empty()) return out;

    if (journal_.get("quota_exhausted_month").value_or("") == Journal::this_month()) {
        stats_.quota_exhausted = true;
        out.retry_later = true;  // keep journaling; fetch again next month
        return out;
    }
    stats_.quota_exhausted = false;

    RunReporter reporter(history_, secrets, config_.progress_interval);
    if (auto r = reporter.start("event", rows.front().source, false); !r) {
        // No apply without its history record (issue 8): the events stay journaled.
        spdlog::warn("event batch not started: cannot record a history run: {}", r.error());
        out.retry_later = true;
        return out;
    }
    const std::int64_t run_id = reporter.run_id();
    RunCounters& counters = reporter.counters();
    auto record = [&](const RunItem& item) { reporter.record(item); };
    auto finish = [&](RunStatus status, const std::string& message) {
        counters.requests = static_cast<std::int64_t>(client_.stats().requests - calls_counted_);
        counters.retries = static_cast<std::int64_t>(client_.stats().retries);
        journal_.add_calls(counters.requests, "event");
        calls_counted_ = client_.stats().requests;
        (void)reporter.finish(status, message);  // logs the outcome; a failed store is logged there
    };

    // ---- fetch by id ----
    EventFetch fetched;
    std::set<std::string> failed_users;
    std::set<std::int64_t> failed_depts;
    dingtalk::ContactsApi api(client_);
    auto fail_item = [&](const std::string& type, const std::string& id, const ApiFailure& f) {
        reporter.item_failed(RunItem{"fetch", type, id, f.api, f.message()});
    };
    auto fetch_dept = [&](std::int64_t id) {
        api.department_get(
            id,
            [&, id](dingtalk::DeptDetail&& d) {
                fetched.departments[id] = std::move(d);
                ++counters.departments_fetched;
            },
            [&, id](const ApiFailure& f) {
                if (f.kind == FailureKind::not_found) {
                    fetched.departments[id] = std::nullopt;
                    return;
                }
                failed_depts.insert(id);
                fail_item("department", std::to_string(id), f);
            });
    };
    for (auto id : depts) fetch_dept(id);
    for (const auto& u : users) {
        api.user_get(
            u,
            [&, u](dingtalk::UserDetail&& d) {
                fetched.users[u] = d.merged();
                ++counters.users_fetched;
            },
            [&, u](const ApiFailure& f) {
                if (f.kind == FailureKind::not_found) {
                    fetched.users[u] = std::nullopt;
                    return;
                }
                failed_users.insert(u);
                fail_item("user", u, f);
            });
    }
    auto fatal = client_.run();

    if (!fatal && !cache_) {
        auto current = target_.read();
        if (!current) {
            out.retry_later = true;
            finish(RunStatus::failed, "cannot read the target: " + current.error());
            return out;
        }
        cache_ = std::move(*current);
    }
    if (!fatal) {
        // Leader flags that changed: the departments' leader lists (and so managers) changed too.
        auto again = leader_changes(*cache_, fetched);
        for (auto id : again)
            if (!failed_depts.count(id)) fetch_dept(id);
        if (!again.empty()) fatal = client_.run();
    }
    if (fatal) {
        if (fatal->kind == FailureKind::quota) {
            journal_.set("quota_exhausted_month", Journal::this_month());
            stats_.quota_exhausted = true;
        }
        out.retry_later = true;
        finish(RunStatus::failed,
               dingtalk::explain_failure(*fatal, !config_.client.transport.proxy_url.empty()) +
                   "; the events stay journaled and are applied later");
        return out;
    }

    // ---- map + plan + safeguard ----
    const OrgSnapshot& current = *cache_;
    PatchResult patched = patch_desired(current, fetched, mapping_, config_.root_department);
    PlanOptions po;
    po.allow_removals = true;
    po.delete_removed_users = mapping_.removed_user_action() == RemovedUserAction::del;
    po.conflict_policy = mapping_.conflict_policy();  // the same rules as a full sync
    for (const auto& u : failed_users) po.frozen_users.insert(u);
    for (auto d : failed_depts) po.frozen_departments.insert(std::to_string(d));
    target_.normalize(patched.desired);  // what the target can hold, as the full sync compares it
    SyncPlan plan = make_plan(patched.desired, current, po);
    for (const auto& s : patched.skipped) plan.skipped.push_back(s);
    for (const auto& s : plan.conflicts)
        record(RunItem{"plan", s.object_type, s.external_id, "conflict", s.reason});
    count_plan(plan, counters);
    counters.items_skipped = static_cast<std::int64_t>(plan.skipped.size());
    for (const auto& s : plan.skipped)
        record(RunItem{"plan", s.object_type, s.external_id, "skip", s.reason});

    std::vector<std::int64_t> done_rows, retry_rows;
    auto row_failed = [&](const JournalEvent& r) {
        for (const auto& u : r.user_ids)
            if (failed_users.count(u)) return true;
        for (const auto& d : r.dept_ids)
            if (auto id = to_id(d); id && failed_depts.count(*id)) return true;
        return false;
    };
    std::set<std::int64_t> nothing_set(nothing.begin(), nothing.end());
    for (const auto& [id, r] : by_id) {
        if (nothing_set.count(id)) continue;
        (row_failed(*r) ? retry_rows : done_rows).push_back(id);
    }

    auto existing = static_cast<int>(current.users.size() + current.departments.size());
    if (auto over = config_.max_deletes.exceeded(plan.counts.removals(), existing)) {
        (void)journal_.mark_attempt(done_rows, "safeguard: " + *over, config_.events.give_up_after);
        out.retry_later = true;
        finish(RunStatus::aborted, *over + " (the events stay journaled; run `dingbridge-agent sync --force` after checking)");
        return out;
    }

    if (auto r = reporter.checkpoint(); !r) {
        out.retry_later = true;
        finish(RunStatus::failed,
               "cannot record the run in the history (nothing applied; the events stay journaled): " + r.error());
        return out;
    }

    // ---- apply ----
    bool ok = true;
    bool cacheable = true;
    if (!plan.changes.empty()) {
        // The same apply stage as a full sync; outcomes[i] tells what became of change i.
        std::vector<Status> outcomes;
        if (auto r = apply_plan(plan, target_, reporter, &outcomes); !r) {
            cache_.reset();
            out.retry_later = true;
            finish(RunStatus::failed, r.error());
            return out;
        }
        for (std::size_t i = 0; i < plan.changes.size(); ++i) {
            const Change& c = plan.changes[i];
            if (c.kind == ChangeKind::disable_user || c.kind == ChangeKind::delete_user ||
                current.removed_users.count(c.external_id))
                cacheable = false;
            if (!outcomes[i]) ok = false;
        }
    }
    if (ok && cacheable)
        cache_ = std::move(patched.desired);
    else
        cache_.reset();

    // ---- journal rows ----
    failpoint("after-apply");
    if (!journal_.mark_done(done_rows, run_id)) {
        out.retry_later = true;  // applied; a rerun plans nothing for them (idempotent)
    } else {
        out.handled += done_rows.size();
    }
    if (!retry_rows.empty()) {
        (void)journal_.mark_attempt(retry_rows, "fetch failed", config_.events.give_up_after);
        out.retry_later = true;
    }
    std::int64_t oldest = 0;
    for (const auto& r : rows) oldest = oldest ? std::min(oldest, r.received_ms) : r.received_ms;
    stats_.last_lag_ms = now_ms() - oldest;
    stats_.batches++;
    stats_.events_applied += done_rows.size();
    stats_.events_failed += retry_rows.size();
    stats_.changes_applied += static_cast<std::uint64_t>(counters.changes_applied);
    std::string summary = std::to_string(rows.size()) + " events, " + std::to_string(users.size()) + " users and " +
                          std::to_string(depts.size()) + " departments fetched, " +
                          std::to_string(counters.changes_applied) + " of " + std::to_string(plan.counts.total()) +
                          " changes applied";
    if (counters.items_failed) summary += "; " + std::to_string(counters.items_failed) + " items failed";
    finish(counters.items_failed ? RunStatus::partial : RunStatus::succeeded, summary);
    return out;
}

}  // namespace dingbridge::agent::events
