#include "agent/sync/full_sync.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

#include "agent/dingtalk/client.h"
#include "agent/dingtalk/parse.h"
#include "agent/org/plan.h"
#include "agent/sync/build.h"
#include "shared/log.h"

namespace dingbridge::agent {

using dingtalk::ApiFailure;
using dingtalk::FailureKind;

int SyncResult::exit_code() const {
    if (status == "succeeded") return 0;
    if (status == "partial") return 3;
    if (status == "aborted") return 4;
    return 1;
}

std::string explain_failure(const ApiFailure& f, const AgentConfig& config) {
    std::string m = f.message();
    switch (f.kind) {
        case FailureKind::ip_denied: {
            std::string ip = dingtalk::ip_from_allowlist_message(f.errmsg);
            m += ". DingTalk refused the call because the source address " + (ip.empty() ? std::string("(not given)") : ip) +
                 " is not on the app's server egress IP allow-list (服务器出口IP). ";
            m += config.client.transport.proxy_url.empty()
                     ? "Set proxy.url so that the agent calls DingTalk through dingbridge-proxy, whose egress IP is allow-listed."
                     : "Add " + (ip.empty() ? std::string("the proxy's egress IP") : ip) +
                           " to the allow-list, or check the proxy's outgoing.bind_address.";
            break;
        }
        case FailureKind::bad_credentials:
            m += ". Check dingtalk.app_key and dingtalk.app_secret (the app's AppKey/AppSecret in the developer console).";
            break;
        case FailureKind::permission: {
            std::string scopes = dingtalk::scopes_from_permission_message(f.errmsg);
            m += ". The app lacks a contact permission" + (scopes.empty() ? std::string() : " (required: " + scopes + ")") +
                 "; grant it in the developer console (权限管理) and retry.";
            break;
        }
        case FailureKind::quota:
            m += ". The organization's monthly DingTalk API quota is used up; calls work again next month (or "
                 "after an edition upgrade).";
            break;
        case FailureKind::proxy_refused:
            if (f.proxy_status == 407)
                m += ". The proxy refused the credentials: check proxy.username and proxy.password.";
            else if (f.proxy_status == 403)
                m += ". The proxy refused this destination or source: allow the DingTalk hosts for this tenant in the proxy's "
                     "destinations (and allow_internal_networks for a local simulator).";
            else
                m += ". The proxy could not open the tunnel (" + std::to_string(f.proxy_status) +
                     "): see the proxy's access log.";
            break;
        case FailureKind::tls:
            m += ". The TLS certificate was not trusted: check dingtalk.ca_file (and proxy.ca_file for an https:// proxy).";
            break;
        case FailureKind::network:
            m += config.client.transport.proxy_url.empty() ? ". DingTalk is unreachable."
                                                          : ". Check that the proxy at proxy.url is running and reachable.";
            break;
        default: break;
    }
    return m;
}

namespace {

std::string json_body_dept(std::int64_t id) { return "{\"dept_id\":" + std::to_string(id) + ",\"language\":\"zh_CN\"}"; }

std::string json_body_users(std::int64_t id, std::int64_t cursor) {
    return "{\"dept_id\":" + std::to_string(id) + ",\"cursor\":" + std::to_string(cursor) +
           ",\"size\":100,\"contain_access_limit\":true,\"language\":\"zh_CN\"}";
}

// Walks the tree with the client; every handler queues the follow-up calls (BFS order).
class TreeWalk {
public:
    TreeWalk(dingtalk::DingTalkClient& client, const Mapping& mapping, std::int64_t root, HistoryStore& history,
             std::int64_t run_id, RunCounters& counters, const std::vector<std::string>& secrets, bool& history_failed)
        : client_(client),
          mapping_(mapping),
          history_(history),
          run_id_(run_id),
          counters_(counters),
          secrets_(secrets),
          history_failed_(history_failed) {
        fetched_.root_id = root;
    }

    // The tree with the fewest calls: the legacy recursive /department/list (one call) checked
    // against listsub of the root; when they disagree (or the list fails) the walk falls back to
    // listsub per department. department/get only when the mapping needs it (and for the root).
    void start() {
        need_get_ = mapping_.needs_department_get();
        fetched_.leaders_from_pages = !need_get_;
        const std::int64_t root = fetched_.root_id;
        detail(root, true);
        page(root, 0);
        client_.call_get(
            "/department/list", "id=" + std::to_string(root) + "&fetch_child=true&lang=zh_CN",
            [this](std::string& body) -> std::optional<ApiFailure> {
                auto r = dingtalk::parse_legacy_department_list("/department/list", body);
                if (!r.ok()) return r.failure();
                legacy_ = std::move(r.value());
                legacy_ok_ = true;
                tree_check_done();
                return std::nullopt;
            },
            [this](const ApiFailure& f) {
                spdlog::warn("{}; reading the tree with listsub instead", f.message());
                tree_check_done();
            });
        client_.call(
            "/topapi/v2/department/listsub", json_body_dept(root),
            [this](std::string& body) -> std::optional<ApiFailure> {
                auto r = dingtalk::parse_listsub("/topapi/v2/department/listsub", body);
                if (!r.ok()) return r.failure();
                root_kids_ = std::move(r.value());
                root_listsub_ok_ = true;
                tree_check_done();
                return std::nullopt;
            },
            [this, root](const ApiFailure& f) {
                fail(root, f);
                tree_check_done();
            });
    }
    FetchedOrg& fetched() { return fetched_; }

private:
    void fail(std::int64_t dept, const ApiFailure& f) {
        fetched_.failed_departments.insert(dept);
        ++counters_.items_failed;
        std::string msg = redact(f.message(), secrets_);
        spdlog::error("department {}: {}", dept, msg);
        if (!history_.add_item(run_id_, RunItem{"fetch", "department", std::to_string(dept), f.api, msg}))
            history_failed_ = true;
    }

    void tree_check_done() {
        if (++tree_answers_ < 2 || !root_listsub_ok_) return;  // root listsub failed: subtree unknown
        std::set<std::int64_t> from_list, from_listsub;
        for (const auto& d : legacy_)
            if (d.parent_id == fetched_.root_id) from_list.insert(d.dept_id);
        for (const auto& d : root_kids_) from_listsub.insert(d.dept_id);
        if (legacy_ok_ && from_list == from_listsub) {
            std::map<std::int64_t, std::vector<const dingtalk::DeptSummary*>> kids;
            for (const auto& d : legacy_) kids[d.parent_id].push_back(&d);
            // Breadth first from the root, as the listsub walk would visit them.
            std::vector<std::int64_t> queue{fetched_.root_id};
            for (std::size_t i = 0; i < queue.size(); ++i) {
                const std::int64_t id = queue[i];
                auto& mine = fetched_.children[id];
                for (const auto* d : kids[id]) {
                    if (!seen_.insert(d->dept_id).second) {
                        fetched_.problems.push_back("department " + std::to_string(d->dept_id) +
                                                    " is listed twice (under " + std::to_string(id) + ")");
                        continue;
                    }
                    mine.push_back(d->dept_id);
                    if (mapping_.exclude_departments().count(d->dept_id)) continue;
                    summaries_[d->dept_id] = *d;
                    detail(d->dept_id, false);
                    page(d->dept_id, 0);
                    queue.push_back(d->dept_id);
                }
            }
            legacy_.clear();
            return;
        }
        if (legacy_ok_)
            spdlog::warn(
                "/department/list and listsub disagree on the children of department {} ({} vs {}); "
                "reading the tree with listsub",
                fetched_.root_id, from_list.size(), from_listsub.size());
        legacy_.clear();
        children_of(fetched_.root_id, root_kids_);
    }

    // department/get when the mapping needs it (always for the root: its name); otherwise the
    // listing's id/name/parent is all the mapping reads.
    void detail(std::int64_t id, bool force) {
        if (!force && !need_get_) {
            auto s = summaries_.find(id);
            if (s != summaries_.end()) {
                dingtalk::DeptDetail d;
                d.dept_id = s->second.dept_id;
                d.name = s->second.name;
                d.parent_id = s->second.parent_id;
                fetched_.departments[id] = std::move(d);
                summaries_.erase(s);
                ++counters_.departments_fetched;
                return;
            }
        }
        client_.call("/topapi/v2/department/get", json_body_dept(id),
                     [this, id](std::string& body) -> std::optional<ApiFailure> {
                         auto r = dingtalk::parse_dept_get("/topapi/v2/department/get", body);
                         if (!r.ok()) return r.failure();
                         fetched_.departments[id] = std::move(r.value());
                         ++counters_.departments_fetched;
                         return std::nullopt;
                     },
                     [this, id](const ApiFailure& f) { fail(id, f); });
    }

    void children_of(std::int64_t id, const std::vector<dingtalk::DeptSummary>& list) {
        auto& kids = fetched_.children[id];
        for (const auto& d : list) {
            if (!seen_.insert(d.dept_id).second) {
                fetched_.problems.push_back("department " + std::to_string(d.dept_id) + " is listed twice (under " +
                                            std::to_string(id) + ")");
                continue;
            }
            kids.push_back(d.dept_id);
            if (mapping_.exclude_departments().count(d.dept_id)) continue;
            summaries_[d.dept_id] = d;
            visit(d.dept_id);
        }
    }

    // The listsub walk (fallback): get, listsub and user pages of one department.
    void visit(std::int64_t id) {
        detail(id, false);
        client_.call("/topapi/v2/department/listsub", json_body_dept(id),
                     [this, id](std::string& body) -> std::optional<ApiFailure> {
                         auto r = dingtalk::parse_listsub("/topapi/v2/department/listsub", body);
                         if (!r.ok()) return r.failure();
                         children_of(id, r.value());
                         return std::nullopt;
                     },
                     [this, id](const ApiFailure& f) { fail(id, f); });
        page(id, 0);
    }

    void page(std::int64_t id, std::int64_t cursor) {
        client_.call("/topapi/v2/user/list", json_body_users(id, cursor),
                     [this, id, cursor](std::string& body) -> std::optional<ApiFailure> {
                         auto r = dingtalk::parse_user_list("/topapi/v2/user/list", body);
                         if (!r.ok()) return r.failure();
                         auto& p = r.value();
                         if (p.has_more && (p.next_cursor <= cursor || p.next_cursor > 100000)) {
                             ApiFailure f;
                             f.kind = FailureKind::api;  // DingTalk answers the same again: not retried
                             f.api = "/topapi/v2/user/list";
                             f.errmsg = "next_cursor " + std::to_string(p.next_cursor) + " does not advance from " +
                                        std::to_string(cursor);
                             return f;
                         }
                         counters_.users_fetched += static_cast<std::int64_t>(p.users.size());
                         for (auto& u : p.users) {
                             if (u.leader && fetched_.leaders_from_pages) fetched_.page_leaders[id].push_back(u.userid);
                             merge_user_item(fetched_.users, id, std::move(u));
                         }
                         if (p.has_more) page(id, p.next_cursor);
                         return std::nullopt;
                     },
                     [this, id](const ApiFailure& f) { fail(id, f); });
    }

    dingtalk::DingTalkClient& client_;
    const Mapping& mapping_;
    HistoryStore& history_;
    std::int64_t run_id_;
    RunCounters& counters_;
    const std::vector<std::string>& secrets_;
    bool& history_failed_;
    FetchedOrg fetched_;
    std::set<std::int64_t> seen_;
    bool need_get_ = true;
    std::map<std::int64_t, dingtalk::DeptSummary> summaries_;  // listed, department/get skipped
    std::vector<dingtalk::DeptSummary> legacy_, root_kids_;
    bool legacy_ok_ = false, root_listsub_ok_ = false;
    int tree_answers_ = 0;
};

void print_counts(std::ostream& out, const PlanCounts& c) {
    out << "  departments: +" << c.create_department << " ~" << c.update_department << " -" << c.delete_department
        << "\n  users:       +" << c.create_user << " ~" << c.update_user << " disable " << c.disable_user << " delete "
        << c.delete_user << "\n";
}

}  // namespace

void count_plan(const SyncPlan& plan, RunCounters& c) {
    c.changes_planned = plan.counts.total();
    c.create_department = plan.counts.create_department;
    c.update_department = plan.counts.update_department;
    c.delete_department = plan.counts.delete_department;
    c.create_user = plan.counts.create_user;
    c.update_user = plan.counts.update_user;
    c.disable_user = plan.counts.disable_user;
    c.delete_user = plan.counts.delete_user;
}

std::optional<std::string> apply_plan(const SyncPlan& plan, Target& target, HistoryStore& history, std::int64_t run_id,
                                      RunCounters& counters, const std::vector<std::string>& secrets, bool history_ok) {
    using Clock = std::chrono::steady_clock;
    const bool tty = isatty(STDERR_FILENO) != 0;
    std::string error;
    // Nothing is applied unless the history can hold its record (checked once more right here).
    if (!history_ok || !history.update_progress(run_id, counters))
        return "cannot write the run's history to the state database (" + history.last_error() +
               "); nothing was applied";
    if (!target.begin(error)) return "cannot start the target transaction: " + error;
    auto last_apply_log = Clock::now();
    constexpr std::size_t kBatch = 128;  // changes per target batch (one SAVEPOINT while none fails)
    std::vector<std::optional<std::string>> errors;
    for (std::size_t i = 0; i < plan.changes.size(); ++i) {
        const std::size_t in_batch = i % kBatch;
        if (in_batch == 0)
            target.apply_batch(plan.changes.data() + i, std::min(kBatch, plan.changes.size() - i), errors);
        const Change& c = plan.changes[i];
        if (auto& e = errors[in_batch]) {
            ++counters.items_failed;
            std::string msg = redact(*e, secrets);
            spdlog::error("run {}: {} {} failed: {}", run_id, change_kind_name(c.kind), c.external_id, msg);
            const bool dept = c.kind == ChangeKind::create_department || c.kind == ChangeKind::update_department ||
                              c.kind == ChangeKind::delete_department;
            if (!history.add_item(run_id, RunItem{"apply", dept ? "department" : "user", c.external_id,
                                                  change_kind_name(c.kind), msg}))
                history_ok = false;
        } else {
            ++counters.changes_applied;
        }
        auto now = Clock::now();
        if (now - last_apply_log >= std::chrono::seconds(1)) {
            last_apply_log = now;
            history.update_progress(run_id, counters);
            if (tty)
                std::fprintf(stderr, "\r\033[Kapplying: %lld/%lld", static_cast<long long>(counters.changes_applied),
                             static_cast<long long>(counters.changes_planned));
        }
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    // The record of what is about to be committed must be stored first.
    if (!history_ok || !history.update_progress(run_id, counters)) {
        target.rollback();
        counters.changes_applied = 0;
        return "cannot write the run's history to the state database (" + history.last_error() +
               "); the target transaction was rolled back, nothing was applied";
    }
    if (!target.commit(error)) {
        target.rollback();
        counters.changes_applied = 0;
        return "cannot commit the target transaction (nothing applied): " + error;
    }
    return std::nullopt;
}

SyncResult run_full_sync(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                         const SyncOptions& options, std::ostream& out) {
    using Clock = std::chrono::steady_clock;
    SyncResult result;
    RunCounters counters;
    const auto secrets = config.secrets();
    result.run_id = history.start_run("full", options.trigger, options.dry_run);
    if (result.run_id == 0) {
        // No record, no run: a sync must never change the target without its history.
        result.status = "failed";
        result.message = "cannot record the run in the state database (" + history.last_error() +
                         "); nothing was fetched or applied";
        spdlog::error("{}", result.message);
        return result;
    }
    spdlog::info("run {}: full sync{} started", result.run_id, options.dry_run ? " (dry run)" : "");
    bool history_failed = false;  // some history write failed: apply nothing
    auto record = [&](const RunItem& item) {
        if (!history.add_item(result.run_id, item)) history_failed = true;
    };
    auto finish = [&](const std::string& status, const std::string& message) {
        result.status = status;
        result.message = redact(message, secrets);
        if (!history.finish_run(result.run_id, status, result.message, counters)) {
            spdlog::error("run {}: the outcome could not be recorded in the state database: {}", result.run_id,
                          history.last_error());
            result.message += " (not recorded in the history: " + history.last_error() + ")";
            if (result.status == "succeeded") result.status = "partial";
        }
        if (status == "succeeded") spdlog::info("run {}: {}: {}", result.run_id, status, result.message);
        else spdlog::error("run {}: {}: {}", result.run_id, status, result.message);
        return result;
    };

    // ---- fetch ----
    dingtalk::DingTalkClient client(config.client);
    TreeWalk walk(client, mapping, config.root_department, history, result.run_id, counters, secrets, history_failed);
    walk.start();
    const bool tty = isatty(STDERR_FILENO) != 0;
    auto last_log = Clock::now();
    auto last_db = Clock::now();
    auto tick = [&] {
        counters.requests = static_cast<std::int64_t>(client.stats().requests);
        counters.retries = static_cast<std::int64_t>(client.stats().retries);
        counters.throttled = static_cast<std::int64_t>(client.stats().throttled);
        auto now = Clock::now();
        if (tty) {
            std::fprintf(stderr, "\r\033[Kfetching: %lld departments, %lld users, %lld requests",
                         static_cast<long long>(counters.departments_fetched),
                         static_cast<long long>(counters.users_fetched), static_cast<long long>(counters.requests));
        } else if (now - last_log >= config.progress_interval) {
            last_log = now;
            spdlog::info("run {}: progress: {} departments, {} users fetched, {} requests, {} retries", result.run_id,
                         counters.departments_fetched, counters.users_fetched, counters.requests, counters.retries);
        }
        if (now - last_db >= std::chrono::seconds(1)) {
            last_db = now;
            history.update_progress(result.run_id, counters);
        }
    };
    auto fatal = client.run(tick);
    FetchedOrg& fetched = walk.fetched();
    // manager_source: dingtalk: 直属主管 is only in v2/user/get, one call per user.
    if (!fatal && mapping.manager_source() == ManagerSource::dingtalk) {
        for (auto& [userid, merged] : fetched.users) {
            auto& m = merged;  // clang 14 (the fuzz build) cannot capture a structured binding
            client.call(
                "/topapi/v2/user/get", "{\"userid\":\"" + json_escape(userid) + "\",\"language\":\"zh_CN\"}",
                [&m](std::string& body) -> std::optional<ApiFailure> {
                    auto r = dingtalk::parse_user_get("/topapi/v2/user/get", body);
                    if (!r.ok()) return r.failure();
                    m.manager_userid = std::move(r.value().manager_userid);
                    return std::nullopt;
                },
                [&, id = userid](const ApiFailure& f) {
                    if (f.kind == FailureKind::not_found) return;  // left meanwhile: no manager
                    fetched.failed_users.insert(id);
                    ++counters.items_failed;
                    record(RunItem{"fetch", "user", id, f.api, redact(f.message(), secrets)});
                });
        }
        fatal = client.run(tick);
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    tick();
    if (fatal) return finish("failed", explain_failure(*fatal, config));
    if (!fetched.departments.count(config.root_department))
        return finish("failed", "the root department " + std::to_string(config.root_department) +
                                    " could not be read; nothing was applied");
    spdlog::info("run {}: fetched {} departments, {} users in {} requests", result.run_id, fetched.departments.size(),
                 fetched.users.size(), client.stats().requests);
    {
        // What a full sync with this mapping costs in metered DingTalk calls (retries aside).
        std::uint64_t total = 0;
        std::string by_api;
        for (const auto& [api, n] : client.stats().calls_by_api) {
            total += n;
            by_api += (by_api.empty() ? "" : ", ") + api + " " + std::to_string(n);
        }
        out << "DingTalk calls for a full sync: " << total << " (" << by_api << "); this run sent "
            << client.stats().requests << " requests including retries\n";
    }

    // ---- build + validate ----
    if (!fetched.problems.empty()) {
        std::string m = "the department tree from DingTalk is inconsistent: " + fetched.problems.front();
        if (fetched.problems.size() > 1) m += " (and " + std::to_string(fetched.problems.size() - 1) + " more)";
        return finish("failed", m + "; nothing was applied");
    }
    const bool read_complete = fetched.complete() && fetched.failed_users.empty();
    const std::size_t failed_departments = fetched.failed_departments.size();
    // Frees each fetched user once mapped: the raw and mapped users are never both held in full.
    DesiredOrg desired = build_desired(std::move(fetched), mapping);
    fetched = FetchedOrg{};  // the rest of the raw read is no longer needed: keep peak memory down
    std::string root_id = std::to_string(config.root_department);
    std::vector<std::string> problems;
    {
        // Validate only the part we know (unknown subtrees are frozen, not broken).
        if (mapping.include_departments().empty()) problems = validate_tree(desired.snapshot.departments, root_id);
    }
    if (!problems.empty()) {
        std::string m = "the department tree from DingTalk is inconsistent: " + problems.front();
        if (problems.size() > 1) m += " (and " + std::to_string(problems.size() - 1) + " more)";
        return finish("failed", m + "; nothing was applied");
    }

    // ---- diff + plan ----
    std::string error;
    target.normalize(desired.snapshot);
    auto current = target.read(error);
    if (!current) return finish("failed", "cannot read the target: " + error);
    PlanOptions po;
    po.allow_removals = read_complete;
    po.delete_removed_users = mapping.removed_user_action() == RemovedUserAction::del;
    if (mapping.delete_after().count() > 0)
        po.delete_disabled_before = static_cast<std::int64_t>(std::time(nullptr)) - mapping.delete_after().count();
    po.conflict_policy = mapping.conflict_policy();
    po.frozen_users = desired.frozen_users;
    po.frozen_departments = desired.frozen_departments;
    SyncPlan plan = make_plan(desired.snapshot, *current, po);
    for (const auto& s : desired.skipped) plan.skipped.push_back(s);
    count_plan(plan, counters);
    counters.items_skipped = static_cast<std::int64_t>(plan.skipped.size());
    for (const auto& s : plan.skipped) {
        record(RunItem{"plan", s.object_type, s.external_id, "skip", s.reason});
        spdlog::warn("run {}: skipped {} {}: {}", result.run_id, s.object_type, s.external_id, s.reason);
    }
    for (const auto& s : plan.conflicts) {
        record(RunItem{"plan", s.object_type, s.external_id, "conflict", s.reason});
        spdlog::warn("run {}: conflict for {} {}: {}", result.run_id, s.object_type, s.external_id, s.reason);
    }
    // A partial run names what it left alone: every department whose DingTalk state is unknown.
    {
        std::set<std::string> untouched(desired.frozen_departments.begin(), desired.frozen_departments.end());
        if (!read_complete)  // below a failed read: never seen this time, kept as the target has them
            for (const auto& [id, d] : current->departments)
                if (!desired.snapshot.departments.count(id)) untouched.insert(id);
        for (const auto& id : untouched)
            record(
                RunItem{"plan", "department", id, "untouched",
                        "not read completely from DingTalk; it and its members were left as they are in the target"});
    }
    std::string incomplete;
    if (!read_complete)
        incomplete = "the read was incomplete (" + std::to_string(failed_departments) +
                     " departments could not be fully read); no removals were computed" +
                     (plan.suppressed_removals ? " (" + std::to_string(plan.suppressed_removals) + " held back)" : "");

    out << (options.dry_run ? "Plan (dry run, nothing applied): " : "Plan: ") << plan.counts.total() << " changes\n";
    print_counts(out, plan.counts);
    if (!incomplete.empty()) out << "  note: " << incomplete << "\n";
    if (!plan.skipped.empty()) out << "  skipped: " << plan.skipped.size() << " (see history show " << result.run_id << ")\n";
    if (!plan.conflicts.empty())
        out << "  conflicts: " << plan.conflicts.size() << " unique values left empty (see history show "
            << result.run_id << ")\n";

    auto existing = static_cast<int>(current->users.size() + current->departments.size());
    auto over = config.max_deletes.exceeded(plan.counts.removals(), existing);
    if (options.dry_run) {
        for (const auto& c : plan.changes) {
            out << "  " << change_kind_name(c.kind) << " " << c.external_id;
            if (c.kind == ChangeKind::create_department || c.kind == ChangeKind::update_department)
                out << " \"" << c.department->name << "\"";
            else if (c.kind == ChangeKind::create_user || c.kind == ChangeKind::update_user)
                out << " \"" << c.user->display_name << "\"";
            if (!c.detail.empty()) out << ": " << c.detail;
            out << "\n";
        }
        if (over) out << "  note: a real run would abort: " << *over << "\n";
        return finish(incomplete.empty() ? "succeeded" : "partial",
                      "dry run: " + std::to_string(plan.counts.total()) + " changes planned, none applied" +
                          (incomplete.empty() ? "" : "; " + incomplete));
    }
    if (over && !options.force) return finish("aborted", *over);

    // ---- apply + record ----
    if (auto e = apply_plan(plan, target, history, result.run_id, counters, secrets, !history_failed))
        return finish("failed", *e);
    std::string summary = std::to_string(counters.changes_applied) + " of " + std::to_string(plan.counts.total()) +
                          " changes applied";
    if (counters.items_failed > 0) summary += "; " + std::to_string(counters.items_failed) + " items failed";
    if (!plan.skipped.empty()) summary += "; " + std::to_string(plan.skipped.size()) + " skipped";
    if (!plan.conflicts.empty()) summary += "; " + std::to_string(plan.conflicts.size()) + " conflicts";
    if (!incomplete.empty()) summary += "; " + incomplete;
    if (over) summary += "; safeguard overridden with --force";
    bool partial = counters.items_failed > 0 || !incomplete.empty();
    return finish(partial ? "partial" : "succeeded", summary);
}

}  // namespace dingbridge::agent
