#include "agent/events/processor.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <set>

#include "agent/dingtalk/parse.h"
#include "agent/events/event_parse.h"
#include "agent/events/patch.h"
#include "agent/sync/full_sync.h"

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

bool is_department_change(ChangeKind k) {
    return k == ChangeKind::create_department || k == ChangeKind::update_department ||
           k == ChangeKind::delete_department;
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

    RunCounters counters;
    std::int64_t run_id = history_.start_run("event", rows.front().source, false);
    if (run_id == 0) {
        // No apply without its history record (issue 8): the events stay journaled.
        spdlog::warn("event batch not started: cannot record a history run: {}", history_.last_error());
        out.retry_later = true;
        return out;
    }
    bool history_ok = true;
    auto record = [&](const RunItem& item) { history_ok = history_.add_item(run_id, item) && history_ok; };
    auto finish = [&](const std::string& status, const std::string& message) {
        counters.requests = static_cast<std::int64_t>(client_.stats().requests - calls_counted_);
        counters.retries = static_cast<std::int64_t>(client_.stats().retries);
        journal_.add_calls(counters.requests, "event");
        calls_counted_ = client_.stats().requests;
        if (!history_.finish_run(run_id, status, redact(message, secrets), counters))
            spdlog::warn("run {}: cannot record its end: {}", run_id, history_.last_error());
        if (status == "succeeded")
            spdlog::info("run {}: event batch {}: {}", run_id, status, message);
        else
            spdlog::warn("run {}: event batch {}: {}", run_id, status, redact(message, secrets));
    };

    // ---- fetch by id ----
    EventFetch fetched;
    std::set<std::string> failed_users;
    std::set<std::int64_t> failed_depts;
    auto fail_item = [&](const std::string& type, const std::string& id, const ApiFailure& f) {
        ++counters.items_failed;
        std::string msg = redact(f.message(), secrets);
        record(RunItem{"fetch", type, id, f.api, msg});
    };
    auto fetch_dept = [&](std::int64_t id) {
        client_.call(
            "/topapi/v2/department/get", "{\"dept_id\":" + std::to_string(id) + ",\"language\":\"zh_CN\"}",
            [&, id](std::string& body) -> std::optional<ApiFailure> {
                auto r = dingtalk::parse_dept_get("/topapi/v2/department/get", body);
                if (!r.ok()) return r.failure();
                fetched.departments[id] = std::move(r.value());
                ++counters.departments_fetched;
                return std::nullopt;
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
        client_.call(
            "/topapi/v2/user/get", "{\"userid\":" + json_quote(u) + ",\"language\":\"zh_CN\"}",
            [&, u](std::string& body) -> std::optional<ApiFailure> {
                auto r = dingtalk::parse_user_get("/topapi/v2/user/get", body);
                if (!r.ok()) return r.failure();
                fetched.users[u] = r.value().merged();
                ++counters.users_fetched;
                return std::nullopt;
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

    std::string error;
    if (!fatal && !cache_) {
        cache_ = target_.read(error);
        if (!cache_) {
            out.retry_later = true;
            finish("failed", "cannot read the target: " + error);
            return out;
        }
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
        finish("failed", explain_failure(*fatal, config_) + "; the events stay journaled and are applied later");
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
        finish("aborted", *over + " (the events stay journaled; run `dingbridge-agent sync --force` after checking)");
        return out;
    }

    if (!history_ok) {
        out.retry_later = true;
        finish("failed", "cannot record the run in the history (nothing applied; the events stay journaled): " +
                             history_.last_error());
        return out;
    }

    // ---- apply ----
    bool ok = true;
    bool cacheable = true;
    if (!plan.changes.empty()) {
        if (!target_.begin(error)) {
            out.retry_later = true;
            cache_.reset();
            finish("failed", "cannot start the target transaction: " + error);
            return out;
        }
        std::vector<std::optional<std::string>> errors;
        target_.apply_batch(plan.changes.data(), plan.changes.size(), errors);
        for (std::size_t i = 0; i < plan.changes.size(); ++i) {
            const Change& c = plan.changes[i];
            if (c.kind == ChangeKind::disable_user || c.kind == ChangeKind::delete_user ||
                current.removed_users.count(c.external_id))
                cacheable = false;
            if (errors[i]) {
                ok = false;
                ++counters.items_failed;
                std::string msg = redact(*errors[i], secrets);
                record(RunItem{"apply", is_department_change(c.kind) ? "department" : "user", c.external_id,
                               change_kind_name(c.kind), msg});
            } else {
                ++counters.changes_applied;
            }
        }
        if (!target_.commit(error)) {
            target_.rollback();
            cache_.reset();
            counters.changes_applied = 0;
            out.retry_later = true;
            finish("failed", "cannot commit the target transaction (nothing applied): " + error);
            return out;
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
    finish(counters.items_failed ? "partial" : "succeeded", summary);
    return out;
}

}  // namespace dingbridge::agent::events
