#include "agent/events/processor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <set>
#include <type_traits>

#include "agent/dingtalk/contacts_api.h"
#include "agent/dingtalk/explain.h"
#include "agent/events/event_parse.h"
#include "agent/events/patch.h"
#include "agent/sync/apply.h"
#include "agent/sync/run_reporter.h"

namespace dingbridge::agent::events {

using dingtalk::ApiFailure;
using dingtalk::FailureKind;

// Rounds of department/get for departments that fetched objects name but the target lacks: a new
// department's unknown parents are read a level per round.
constexpr int kResolveRounds = 8;

// Which objects a batch of journal rows is about; rows about nothing the sync keeps are done at once.
// Not in the anonymous namespace: EventBatch (processor.h) holds one.
struct BatchObjects {
    std::set<std::string> users;
    std::set<std::int64_t> depts;
    std::vector<std::int64_t> nothing;
    std::map<std::int64_t, const JournalEvent*> by_id;
};

namespace {

std::optional<std::int64_t> positive_id(const std::string& s) {
    std::int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v <= 0) return std::nullopt;
    return v;
}

// Whether a user event can change anything the sync writes. A label (role) change touches no field
// the mapping can read (user/get's role_list is not a source field), an admin change only `admin`:
// each would cost a user/get that can change nothing.
bool changes_synced_fields(const std::string& event_type, const Mapping& mapping) {
    if (event_type == "label_user_change") return false;
    if (event_type == "org_admin_add" || event_type == "org_admin_remove") return mapping.reads_user_field("admin");
    return true;
}

BatchObjects objects_of(const std::vector<JournalEvent>& rows, const Mapping& mapping) {
    BatchObjects b;
    for (const auto& r : rows) {
        b.by_id[r.id] = &r;
        std::string kind = event_object_kind(r.event_type);
        if (kind == "user" && !changes_synced_fields(r.event_type, mapping)) kind.clear();
        bool some = false;  // names an object of its own kind (a user event's DeptId alone names none)
        if (kind == "user") {
            b.users.insert(r.user_ids.begin(), r.user_ids.end());
            some = !r.user_ids.empty();
        }
        if (kind == "department")
            for (const auto& d : r.dept_ids)
                if (auto id = positive_id(d)) {
                    b.depts.insert(*id);
                    some = true;
                }
        // Nothing to fetch for it, so nothing would ever mark it: done at once, or it stays
        // pending for good (and a batch of only such rows would be picked again and again).
        if (!some) b.nothing.push_back(r.id);
    }
    return b;
}

// Removal events about objects the target does not hold (never synced: outside the synced tree,
// excluded, added and removed while unsynced) change nothing, and reading them would be a
// metered call each: they are left out of the batch's reads, and a row left naming nothing is
// done at once. An object another row of the batch names otherwise is still read.
void drop_removals_not_held(BatchObjects& b, const std::vector<JournalEvent>& rows, const OrgSnapshot& held) {
    std::set<std::string> named_users;
    std::set<std::int64_t> named_depts;
    for (const auto& r : rows) {
        if (r.event_type != "user_leave_org") named_users.insert(r.user_ids.begin(), r.user_ids.end());
        if (r.event_type != "org_dept_remove")
            for (const auto& d : r.dept_ids)
                if (auto id = positive_id(d)) named_depts.insert(*id);
    }
    for (auto it = b.users.begin(); it != b.users.end();)
        it = named_users.count(*it) || held.users.count(*it) || held.removed_users.count(*it) ? std::next(it)
                                                                                              : b.users.erase(it);
    for (auto it = b.depts.begin(); it != b.depts.end();)
        it = named_depts.count(*it) || held.departments.count(std::to_string(*it)) ? std::next(it) : b.depts.erase(it);
    std::set<std::int64_t> nothing(b.nothing.begin(), b.nothing.end());
    for (const auto& r : rows) {
        if (nothing.count(r.id)) continue;
        bool some = false;
        for (const auto& u : r.user_ids) some = some || b.users.count(u) > 0;
        for (const auto& d : r.dept_ids)
            if (auto id = positive_id(d)) some = some || b.depts.count(*id) > 0;
        if (!some) b.nothing.push_back(r.id);
    }
}

}  // namespace

// One batch: fetch by id -> patch the cached org -> plan -> apply (the full sync's stages) ->
// journal rows. Holds the batch's state; the processor keeps what outlives it (client, cache).
class EventBatch {
public:
    EventBatch(EventProcessor& p, const std::vector<JournalEvent>& rows, BatchObjects objects, RunReporter& reporter)
        : p_(p), rows_(rows), b_(std::move(objects)), reporter_(reporter), api_(p.client_) {}

    BatchOutcome run() {
        if (!fetch()) return out_;
        const OrgSnapshot& current = *p_.cache_;
        PatchResult patched = patch_desired(current, fetched_, p_.mapping_, p_.config_.root_department);
        note_outside(patched.desired);
        SyncPlan plan = plan_batch(current, patched);
        sort_rows();
        auto existing = static_cast<int>(current.users.size() + current.departments.size());
        if (auto over = p_.config_.max_deletes.exceeded(plan.counts.removals(), existing)) {
            (void)p_.journal_.mark_attempt(done_rows_, "safeguard: " + *over, p_.config_.events.give_up_after);
            return fail(RunStatus::aborted,
                        *over +
                            " (the events stay journaled and are tried again; to apply these removals, check them, "
                            "stop the agent, run `dingbridge-agent sync --force`, and start it again)");
        }
        if (auto r = reporter_.checkpoint(); !r)
            return fail(
                RunStatus::failed,
                "cannot record the run in the history (nothing applied; the events stay journaled): " + r.error());
        if (!apply(plan, current, patched)) return out_;
        failpoint("after-apply");
        mark_rows();
        return summarize(plan);
    }

private:
    BatchOutcome fail(RunStatus status, const std::string& message) {
        out_.retry_later = true;
        finish(status, message);
        return out_;
    }

    void finish(RunStatus status, const std::string& message) {
        RunCounters& counters = reporter_.counters();
        const auto& stats = p_.client_.stats();
        counters.requests = static_cast<std::int64_t>(stats.requests - p_.calls_counted_);
        counters.retries = static_cast<std::int64_t>(stats.retries);
        (void)p_.journal_.add_calls(counters.requests, "event");
        p_.calls_counted_ = stats.requests;
        (void)reporter_.finish(status, message);  // logs the outcome; a failed store is logged there
    }

    // A fetch by id that failed: an object DingTalk no longer has is gone (std::nullopt in `got`);
    // any other failure leaves it as it is, in `failed`, and is an item of the run.
    // So is a department outside the app's contact scope (50004): no read of this app can see it,
    // a full sync's listsub included. A user DingTalk answers 33012 about (an invalid userid) is
    // left as the target has it, and its rows are settled: no retry changes that answer
    // (dingtalk-api.md §4: skip), and the full sync, which lists the user, decides about it.
    template <class Key, class Got>
    void fetch_failed(const ApiFailure& f, const char* type, const Key& key, std::map<Key, Got>& got,
                      std::set<Key>& failed) {
        if (f.kind == FailureKind::not_found) {
            got[key] = std::nullopt;
            return;
        }
        if constexpr (std::is_same_v<Key, std::int64_t>) {
            if (f.has_code(50004)) {
                spdlog::warn("department {}: outside the app's contact scope ({}): treated as gone from the synced org",
                             key, f.message());
                got[key] = std::nullopt;
                return;
            }
        } else {
            if (f.has_code(33012)) {
                unreadable_users_.insert(key);
                return;
            }
        }
        failed.insert(key);
        reporter_.item_failed(RunItem{"fetch", type, id_text(key), f.api, f.message()});
    }
    static std::string id_text(std::int64_t id) { return std::to_string(id); }
    static const std::string& id_text(const std::string& id) { return id; }

    void fetch_dept(std::int64_t id) {
        ++dept_reads_;
        api_.department_get(
            id,
            [this, id](dingtalk::DeptDetail&& d) {
                fetched_.departments[id] = std::move(d);
                ++reporter_.counters().departments_fetched;
            },
            [this, id](const ApiFailure& f) {
                fetch_failed(f, "department", id, fetched_.departments, failed_depts_);
            });
    }

    void fetch_user(const std::string& u) {
        if (!asked_users_.insert(u).second) return;  // one read per user and batch
        ++user_reads_;
        api_.user_get(
            u,
            [this, u](dingtalk::UserDetail&& d) {
                fetched_.users[u] = d.merged();
                ++reporter_.counters().users_fetched;
            },
            [this, u](const ApiFailure& f) { fetch_failed(f, "user", u, fetched_.users, failed_users_); });
    }

    // A department moved into the synced tree brings what is under it: its sub-departments
    // (listsub; each is read and explored in turn, a level per round) and its members (user
    // pages, then user/get each). Its event names only the department itself. A failure keeps
    // the department out of this batch and its row is tried again.
    void read_what_is_under(std::int64_t id) {
        explored_.insert(id);
        auto failed = [this, id](const ApiFailure& f) {
            // Gone meanwhile (its own event follows), or outside the app's contact scope: nothing
            // under it can be read, however often it is asked.
            if (f.kind == FailureKind::not_found || f.has_code(50004)) return;
            if (failed_depts_.insert(id).second)
                reporter_.item_failed(RunItem{"fetch", "department", std::to_string(id), f.api,
                                              "what is under it could not be read: " + f.message()});
            fetched_.departments.erase(id);
        };
        api_.listsub(
            id,
            [this, id](std::vector<dingtalk::DeptSummary>&& subs) {
                const auto top = brought_by_.count(id) ? brought_by_[id] : id;
                for (const auto& s : subs)
                    if (!fetched_.departments.count(s.dept_id) && !failed_depts_.count(s.dept_id) &&
                        !p_.mapping_.exclude_departments().count(s.dept_id)) {
                        moved_in_.insert(s.dept_id);  // came with it
                        brought_by_.emplace(s.dept_id, top);
                        fetch_dept(s.dept_id);
                    }
            },
            failed);
        read_members(id, 0, failed);
    }

    // Whether a department read in this batch hangs under a synced top once the batch is applied:
    // through parents the target holds or this batch read, none of them excluded.
    bool lands_inside(std::int64_t id) const {
        const auto& includes = p_.mapping_.include_departments();
        for (int depth = 0; depth < 64; ++depth) {
            if (p_.mapping_.exclude_departments().count(id)) return false;
            if (includes.empty() ? id == p_.config_.root_department
                                 : std::count(includes.begin(), includes.end(), id) > 0)
                return true;
            const auto it = fetched_.departments.find(id);  // what this batch read decides
            if (it == fetched_.departments.end()) return p_.cache_->departments.count(std::to_string(id)) > 0;
            if (!it->second) return false;
            id = it->second->parent_id;
        }
        return false;
    }

    // A page item carries every field a full sync maps (it builds users from pages alone), so a
    // member is kept as the pages give it; settle_paged_users() decides, once every page is in,
    // which members still need user/get (manager_source: dingtalk, or a department of theirs
    // whose order and leader flag no page of this batch and no held membership gives).
    void read_members(std::int64_t id, std::int64_t cursor, const dingtalk::DingTalkClient::Failed& failed) {
        api_.user_page(
            id, cursor,
            [this, id, failed](dingtalk::UserPage&& page) {
                for (auto& u : page.users) {
                    std::string userid(u.userid);
                    if (p_.mapping_.manager_source() == ManagerSource::dingtalk) {
                        fetch_user(userid);
                        continue;
                    }
                    auto [it, fresh] = paged_.try_emplace(std::move(userid));
                    if (std::none_of(it->second.places.begin(), it->second.places.end(),
                                     [id](const auto& pl) { return pl.dept_id == id; }))
                        it->second.places.push_back({id, u.dept_order, u.leader});
                    if (fresh) it->second.item = std::move(u);
                }
                if (page.has_more)
                    read_members(id, page.next_cursor, failed);
                else
                    paged_depts_.insert(id);
            },
            failed);
    }

    // The members the pages gave: complete ones join the batch's reads as they are, the others
    // are read with user/get. False when there was nothing to settle.
    bool settle_paged_users() {
        if (paged_.empty()) return false;
        for (auto& [userid, m] : paged_) {
            if (asked_users_.count(userid) || fetched_.users.count(userid)) continue;  // read by id anyway
            const auto held = p_.cache_->users.find(userid);
            bool complete = true;
            for (auto d : m.item.dept_id_list) {
                if (std::any_of(m.places.begin(), m.places.end(), [d](const auto& pl) { return pl.dept_id == d; }))
                    continue;
                if (!paged_depts_.count(d) && (p_.outside_.count(d) || p_.mapping_.exclude_departments().count(d)))
                    continue;  // not synced: its place is dropped anyway
                const Membership* was = nullptr;
                if (held != p_.cache_->users.end())
                    for (const auto& x : held->second.departments)
                        if (x.department.view() == std::to_string(d)) was = &x;
                if (!was || paged_depts_.count(d)) {
                    complete = false;  // a page of d that did not list it, or no place known
                    break;
                }
                m.places.push_back({d, was->order, was->leader});
            }
            if (!complete) {
                fetch_user(userid);
                continue;
            }
            ++reporter_.counters().users_fetched;
            fetched_.users[userid] = std::move(m);
        }
        paged_.clear();
        return true;
    }

    // The run's requests so far, written to its history row about once a second: a batch killed
    // while fetching has its calls counted when the next start closes its run (HistoryStore).
    std::function<void()> tick() {
        return [this] {
            RunCounters& c = reporter_.counters();
            c.requests = static_cast<std::int64_t>(p_.client_.stats().requests - p_.calls_counted_);
            reporter_.progress("events: " + std::to_string(user_reads_) + " users, " + std::to_string(dept_reads_) +
                                   " departments, " + std::to_string(c.requests) + " requests",
                               "");
        };
    }

    // ---- fetch by id (and the target's state when not cached); false: the batch ended ----
    bool fetch() {
        // A department an org_dept_modify names that the target lacks was moved in from an
        // excluded or unsynced place (a created one comes with org_dept_create, and empty: not
        // when both are in this batch, a create then a rename or move).
        std::set<std::int64_t> created;
        for (const auto& [row, r] : b_.by_id)
            if (r->event_type == "org_dept_create")
                for (const auto& d : r->dept_ids)
                    if (auto id = positive_id(d)) created.insert(*id);
        for (const auto& [row, r] : b_.by_id)
            if (r->event_type == "org_dept_modify")
                for (const auto& d : r->dept_ids)
                    if (auto id = positive_id(d); id && !created.count(*id)) moved_in_.insert(*id);
        for (auto id : b_.depts) fetch_dept(id);
        for (const auto& u : b_.users) fetch_user(u);
        auto fatal = api_.run(tick());
        if (!fatal && !p_.cache_) {
            auto current = p_.target_.read();
            if (!current) {
                fail(RunStatus::failed, "cannot read the target: " + current.error());
                return false;
            }
            p_.cache_ = std::move(*current);
        }
        // Leader flags that changed: the departments' leader lists (and so managers) changed too.
        // And departments the fetched objects name that the target does not hold yet (a user
        // moved into a department created in the same burst; a new department under a new
        // parent): read now, a level of parents per round, instead of dropping the membership.
        for (int round = 0; !fatal && round < kResolveRounds; ++round) {
            std::set<std::int64_t> more;
            // A department read already is read again once at most for a leader list that
            // disagrees with a member's flag (DingTalk may answer both as they were).
            for (auto id : leader_changes(*p_.cache_, fetched_))
                if (!fetched_.departments.count(id) || leaders_reread_.insert(id).second) more.insert(id);
            const auto& root = p_.config_.root_department;
            for (auto id : unknown_departments(*p_.cache_, fetched_, p_.mapping_, root, p_.outside_)) more.insert(id);
            for (auto id : departments_left_without_a_parent(*p_.cache_, fetched_)) more.insert(id);
            // A department moved under a former subdepartment whose own move this batch did not
            // read: the held ones on the loop are read; when every one was read, once more (a
            // read from before the other's move).
            std::vector<std::int64_t> loop = departments_on_a_loop(*p_.cache_, fetched_, p_.mapping_, root);
            const auto held = std::stable_partition(loop.begin(), loop.end(),
                                                    [&](std::int64_t id) { return !fetched_.departments.count(id); });
            if (held != loop.begin())
                more.insert(loop.begin(), held);
            else
                for (auto id : loop)
                    if (loop_reread_.insert(id).second) more.insert(id);
            for (auto id : failed_depts_) more.erase(id);
            std::vector<std::string> orphans;
            for (auto& u : users_left_without_a_department(*p_.cache_, fetched_))
                if (!failed_users_.count(u) && !unreadable_users_.count(u)) orphans.push_back(std::move(u));
            std::vector<std::int64_t> entering;
            for (auto id : moved_in_)
                if (const auto d = fetched_.departments.find(id);
                    d != fetched_.departments.end() && d->second && !explored_.count(id) && !failed_depts_.count(id) &&
                    !p_.cache_->departments.count(std::to_string(id)) && lands_inside(id))
                    entering.push_back(id);
            if (more.empty() && orphans.empty() && entering.empty()) {
                // Every page is in: members are settled, then looked at like any read (their
                // departments, leader flags) in another round.
                if (!settle_paged_users()) break;
                fatal = api_.run(tick());
                continue;
            }
            for (auto id : more) fetch_dept(id);
            for (const auto& u : orphans) fetch_user(u);
            for (auto id : entering) read_what_is_under(id);
            fatal = api_.run(tick());
        }
        // Rounds used up with members still to settle: read as they are, not resolved further.
        if (!fatal && settle_paged_users()) fatal = api_.run(tick());
        reporter_.clear_line();
        if (!fatal) {
            hold_what_came_with_the_unread();
            keep_departments_of_unread_users();
            keep_gone_parents_of_unread_departments();
            hold_departments_on_a_loop();
            hold_unplaced_departments();
            // A user in a department that could not be read is left as the target has it (its
            // rows are tried again): planned without that place, it could lose its only one.
            for (const auto& [userid, m] : fetched_.users)
                if (m && std::any_of(m->places.begin(), m->places.end(),
                                     [&](const auto& pl) { return failed_depts_.count(pl.dept_id) > 0; }))
                    failed_users_.insert(userid);
            return true;
        }
        if (fatal->kind == FailureKind::quota) p_.note_quota_exhausted();
        fail(RunStatus::failed, dingtalk::explain_failure(*fatal, !p_.config_.client.transport.proxy_url.empty()) +
                                    "; the events stay journaled and are applied later");
        return false;
    }

    // A department moved into the synced tree is applied with all that came with it or not at all:
    // applied without a sub-department that could not be read, its row would be settled and that
    // subtree never read again (its members missing until a full sync). Held, its row is tried
    // again, and what is under it read then.
    void hold_what_came_with_the_unread() {
        for (auto id : std::set<std::int64_t>(failed_depts_)) {
            const auto b = brought_by_.find(id);
            if (b == brought_by_.end() || !failed_depts_.insert(b->second).second) continue;
            fetched_.departments.erase(b->second);
            reporter_.item_failed(RunItem{"fetch", "department", std::to_string(b->second),
                                          dingtalk::api::kDepartmentGet,
                                          "department " + std::to_string(id) +
                                              ", which came into the synced tree with it, could not be read; kept "
                                              "out and tried again"});
        }
    }

    // A user whose read failed is kept as the target has it, so the departments it is in stay too,
    // even one this batch found gone: its row is tried again with the user's.
    void keep_departments_of_unread_users() {
        std::set<std::string> unread = failed_users_;
        unread.insert(unreadable_users_.begin(), unreadable_users_.end());
        for (const auto& userid : unread) {
            const auto u = p_.cache_->users.find(userid);
            if (u == p_.cache_->users.end()) continue;
            for (const auto& m : u->second.departments) {
                const auto id = positive_id(m.department.str());
                const auto d = id ? fetched_.departments.find(*id) : fetched_.departments.end();
                if (d == fetched_.departments.end() || d->second) continue;
                fetched_.departments.erase(d);
                failed_depts_.insert(*id);
            }
        }
    }

    // A department found gone whose subdepartment (held by the target) could not be read stays
    // too: DingTalk removes only empty departments, so that subdepartment moved away (or went),
    // and until it is read, removing its old parent would take it and its members along. The
    // parent's rows are tried again with the subdepartment's; so, a level up, are the rows of a
    // gone department above it.
    void keep_gone_parents_of_unread_departments() {
        if (failed_depts_.empty()) return;  // most batches: no walk over the cached tree
        for (bool held = true; held;) {
            held = false;
            for (const auto& [id, d] : p_.cache_->departments) {
                const auto self = positive_id(id);
                const auto parent = positive_id(d.parent_external_id);
                if (!self || !parent || !failed_depts_.count(*self)) continue;
                const auto gone = fetched_.departments.find(*parent);
                if (gone == fetched_.departments.end() || gone->second) continue;
                fetched_.departments.erase(gone);
                failed_depts_.insert(*parent);
                reporter_.item_failed(RunItem{"fetch", "department", std::to_string(*parent),
                                              dingtalk::api::kDepartmentGet,
                                              "removed in DingTalk, but its subdepartment " + id +
                                                  " could not be read; kept as it is and tried again"});
                held = true;
            }
        }
    }

    // A loop left after the rounds (a department on it could not be read) places none of its
    // departments: those read in this batch stay as the target has them (which has no loop) and
    // their rows are tried again, as do those read under them (hold_unplaced_departments).
    void hold_departments_on_a_loop() {
        const auto root = p_.config_.root_department;
        for (auto id : departments_on_a_loop(*p_.cache_, fetched_, p_.mapping_, root)) {
            if (fetched_.departments.erase(id) > 0)
                reporter_.item_failed(RunItem{"fetch", "department", std::to_string(id), dingtalk::api::kDepartmentGet,
                                              "its new parent is under it in what could be read (a move not read "
                                              "yet); kept as it is and tried again"});
            failed_depts_.insert(id);
        }
    }

    // A department read in this batch whose parent could not be read (or placed within the
    // rounds) cannot be placed: planned under a parent it does not have, it would leave with its
    // subtree and its members would lose their place. It stays as the target has it, counts as a
    // failed read (so its rows are tried again), and so do departments read under it.
    void hold_unplaced_departments() {
        const auto root = p_.config_.root_department;
        const auto& includes = p_.mapping_.include_departments();
        for (bool held = true; held;) {
            held = false;
            const auto unknown = unknown_departments(*p_.cache_, fetched_, p_.mapping_, root, p_.outside_);
            const std::set<std::int64_t> unplaced(unknown.begin(), unknown.end());
            for (auto it = fetched_.departments.begin(); it != fetched_.departments.end();) {
                const auto& [id, detail] = *it;
                const bool top = id == root || std::count(includes.begin(), includes.end(), id) > 0;
                const std::int64_t parent = detail ? detail->parent_id : 0;
                if (!detail || top || (!failed_depts_.count(parent) && !unplaced.count(parent))) {
                    ++it;
                    continue;
                }
                reporter_.item_failed(RunItem{"fetch", "department", std::to_string(id), dingtalk::api::kDepartmentGet,
                                              "its parent department " + std::to_string(parent) +
                                                  " could not be read; kept as it is and tried again"});
                failed_depts_.insert(id);
                it = fetched_.departments.erase(it);
                held = true;
            }
        }
    }

    // Departments read in this batch that the synced tree does not hold (excluded subtree, under
    // an unsynced parent, outside include_departments): no second call for them when they are
    // only named by another object.
    void note_outside(const OrgSnapshot& desired) {
        bool changed = false;
        if (p_.outside_.size() > EventProcessor::kMaxOutside) {
            p_.outside_.clear();
            changed = true;
        }
        for (const auto& [id, detail] : fetched_.departments) {
            if (detail && !desired.departments.count(std::to_string(id)))
                changed |= p_.outside_.insert(id).second;
            else
                changed |= p_.outside_.erase(id) > 0;  // moved into the synced tree (or gone)
        }
        if (changed) p_.save_outside();
    }

    // ---- map + plan: the same rules as a full sync ----
    SyncPlan plan_batch(const OrgSnapshot& current, PatchResult& patched) {
        const Mapping& mapping = p_.mapping_;
        PlanOptions po;
        po.allow_removals = true;
        po.delete_removed_users = mapping.removed_user_action() == RemovedUserAction::del;
        po.conflict_policy = mapping.conflict_policy();
        po.managers_first = p_.target_.wants_managers_first();
        po.username_key = p_.target_.username_key();
        po.fill_required = [this](OrgUser& u) { p_.target_.fill_required(u); };
        for (const auto& u : failed_users_) po.frozen_users.insert(u);
        for (const auto& u : unreadable_users_) po.frozen_users.insert(u);
        for (auto d : failed_depts_) po.frozen_departments.insert(std::to_string(d));
        p_.target_.normalize(patched.desired);  // what the target can hold, as the full sync compares it
        p_.target_.resolve_name_clashes(patched.desired, current);
        SyncPlan plan = make_plan(patched.desired, current, po);
        p_.target_.planned(plan);
        for (const auto& s : plan.skipped)
            if (s.object_type == "user") kept_back_.insert(s.external_id);      // skip_user conflicts
        for (const auto& s : plan.conflicts) kept_back_.insert(s.external_id);  // clear_field
        for (const auto& s : patched.skipped) plan.skipped.push_back(s);
        for (const auto& u : unreadable_users_)
            plan.skipped.push_back({"user", u,
                                    "DingTalk answered 33012 (invalid userid) to user/get: left as it is in the "
                                    "target until a full sync"});
        for (const auto& s : plan.conflicts)
            reporter_.record(RunItem{"plan", s.object_type, s.external_id, "conflict", s.reason});
        count_plan(plan, reporter_.counters());
        reporter_.counters().items_skipped = static_cast<std::int64_t>(plan.skipped.size());
        for (const auto& s : plan.skipped)
            reporter_.record(RunItem{"plan", s.object_type, s.external_id, "skip", s.reason});
        return plan;
    }

    // Rows whose objects were all fetched are done once applied; the others are tried again.
    void sort_rows() {
        auto row_failed = [&](const JournalEvent& r) {
            for (const auto& u : r.user_ids)
                if (failed_users_.count(u)) return true;
            for (const auto& d : r.dept_ids)
                if (auto id = positive_id(d); id && failed_depts_.count(*id)) return true;
            return false;
        };
        std::set<std::int64_t> nothing_set(b_.nothing.begin(), b_.nothing.end());
        for (const auto& [id, r] : b_.by_id) {
            if (nothing_set.count(id)) continue;
            (row_failed(*r) ? retry_rows_ : done_rows_).push_back(id);
        }
    }

    // ---- apply (apply_plan, as a full sync); the cache holds the result when all went through ----
    bool apply(const SyncPlan& plan, const OrgSnapshot& current, PatchResult& patched) {
        bool ok = true, cacheable = true;
        if (!plan.changes.empty()) {
            std::vector<Status> outcomes;   // outcomes[i]: what became of change i
            std::set<std::string> settled;  // written otherwise than planned: the cache would be wrong
            if (auto r = apply_plan(plan, p_.target_, reporter_, &outcomes, &settled); !r) {
                p_.cache_.reset();
                fail(RunStatus::failed, r.error());
                return false;
            }
            if (!settled.empty()) cacheable = false;  // the next batch reads what the target holds
            for (std::size_t i = 0; i < plan.changes.size(); ++i) {
                const Change& c = plan.changes[i];
                if (c.kind == ChangeKind::disable_user || c.kind == ChangeKind::delete_user ||
                    current.removed_users.count(c.external_id))
                    cacheable = false;
                if (!outcomes[i]) {
                    ok = false;
                    note_failed_change(c, outcomes[i].error());
                }
            }
        }
        if (ok && cacheable) {
            as_written(plan, current, patched.desired);
            p_.cache_ = std::move(patched.desired);
        } else
            p_.cache_.reset();
        return true;
    }

    // The cache stands for the target: a user a unique-value conflict kept from its DingTalk
    // values is cached as written (the contested field left empty) or as the target keeps it
    // (skip_user), not as desired. Cached as desired, the value would never be written once the
    // other user gives it up: every later batch would see it as already there.
    void as_written(const SyncPlan& plan, const OrgSnapshot& current, OrgSnapshot& desired) const {
        if (kept_back_.empty()) return;
        std::map<std::string, const OrgUser*, std::less<>> written;  // the last write of each user
        for (const Change& c : plan.changes)
            if ((c.kind == ChangeKind::create_user || c.kind == ChangeKind::update_user) && c.user)
                written[c.external_id.str()] = c.user;
        for (const auto& id : kept_back_) {
            if (const auto w = written.find(id); w != written.end()) {
                if (w->second != &desired.users[id]) desired.users[id] = *w->second;
            } else if (const auto cur = current.users.find(id); cur != current.users.end()) {
                desired.users[id] = cur->second;
            } else {
                desired.users.erase(id);  // skipped, never written
            }
        }
    }

    // A change the target refused (after the target's own retries) is not done: the rows that
    // asked for it are tried again, and count an attempt (events.give_up_after), as a failed fetch
    // does. A change no row names (a manager or membership that follows from another object)
    // sends every row of the batch back: one of them caused it.
    void note_failed_change(const Change& c, const std::string& error) {
        if (target_error_.empty()) target_error_ = error;
        const bool department = c.kind == ChangeKind::create_department || c.kind == ChangeKind::update_department ||
                                c.kind == ChangeKind::delete_department;
        (department ? failed_dept_changes_ : failed_user_changes_).insert(std::string(c.external_id));
    }

    void sort_out_apply_failures() {
        if (target_error_.empty()) return;
        auto names = [&](const JournalEvent& r, const std::string& user, const std::string& dept) {
            if (!user.empty() && std::find(r.user_ids.begin(), r.user_ids.end(), user) != r.user_ids.end()) return true;
            for (const auto& d : r.dept_ids)
                if (auto id = positive_id(d); id && std::to_string(*id) == dept) return true;
            return false;
        };
        bool unnamed = false;
        auto named_by_some_row = [&](const std::string& user, const std::string& dept) {
            for (auto id : done_rows_)
                if (names(*b_.by_id.at(id), user, dept)) return true;
            return false;
        };
        for (const auto& u : failed_user_changes_) unnamed = unnamed || !named_by_some_row(u, "");
        for (const auto& d : failed_dept_changes_) unnamed = unnamed || !named_by_some_row("", d);
        std::vector<std::int64_t> keep;
        for (auto id : done_rows_) {
            const JournalEvent& r = *b_.by_id.at(id);
            bool failed = unnamed;
            for (const auto& u : failed_user_changes_) failed = failed || names(r, u, "");
            for (const auto& d : failed_dept_changes_) failed = failed || names(r, "", d);
            (failed ? apply_failed_rows_ : keep).push_back(id);
        }
        done_rows_.swap(keep);
    }

    // ---- journal rows ----
    void mark_rows() {
        sort_out_apply_failures();
        if (!apply_failed_rows_.empty()) {
            (void)p_.journal_.mark_attempt(apply_failed_rows_, "target error: " + target_error_,
                                           p_.config_.events.give_up_after);
            out_.retry_later = true;
        }
        if (!p_.journal_.mark_done(done_rows_, reporter_.run_id()))
            out_.retry_later = true;  // applied; a rerun plans nothing for them (idempotent)
        else
            out_.handled += done_rows_.size();
        if (!retry_rows_.empty()) {
            (void)p_.journal_.mark_attempt(retry_rows_, "fetch failed", p_.config_.events.give_up_after);
            out_.retry_later = true;
        }
    }

    BatchOutcome summarize(const SyncPlan& plan) {
        const RunCounters& counters = reporter_.counters();
        std::int64_t oldest = 0;
        for (const auto& r : rows_) oldest = oldest ? std::min(oldest, r.received_ms) : r.received_ms;
        auto& stats = p_.stats_;
        stats.last_lag_ms = now_ms() - oldest;
        stats.batches++;
        stats.events_applied += done_rows_.size();
        stats.events_failed += retry_rows_.size() + apply_failed_rows_.size();
        stats.changes_applied += static_cast<std::uint64_t>(counters.changes_applied);
        std::string summary = std::to_string(rows_.size()) + " events, " + std::to_string(user_reads_) + " users and " +
                              std::to_string(dept_reads_) + " departments fetched, " +
                              std::to_string(counters.changes_applied) + " of " + std::to_string(plan.counts.total()) +
                              " changes applied";
        if (counters.items_failed) summary += "; " + std::to_string(counters.items_failed) + " items failed";
        finish(counters.items_failed ? RunStatus::partial : RunStatus::succeeded, summary);
        return out_;
    }

    EventProcessor& p_;
    const std::vector<JournalEvent>& rows_;
    BatchObjects b_;
    RunReporter& reporter_;
    dingtalk::ContactsApi api_;
    EventFetch fetched_;
    std::set<std::string> failed_users_;
    std::set<std::string> unreadable_users_;  // 33012: kept as they are, their rows settled
    std::set<std::int64_t> failed_depts_;
    std::set<std::string> asked_users_;      // user/get asked for in this batch
    std::set<std::int64_t> leaders_reread_;  // read again for a leader flag its first read disagreed with
    std::set<std::int64_t> loop_reread_;     // read again for a parent loop among this batch's reads
    std::set<std::int64_t> moved_in_;        // departments that may have entered the tree with what is under them
    std::set<std::int64_t> explored_;        // those whose sub-departments and members were asked for
    std::map<std::string, dingtalk::MergedUser> paged_;  // members the pages of explored ones gave
    std::set<std::int64_t> paged_depts_;                 // explored ones whose every page was read
    std::map<std::int64_t, std::int64_t> brought_by_;    // came with a moved-in department: that one
    std::set<std::string> kept_back_;                    // users a unique-value conflict kept from their desired values
    std::vector<std::int64_t> done_rows_, retry_rows_, apply_failed_rows_;
    std::set<std::string> failed_user_changes_, failed_dept_changes_;  // external ids the target refused
    std::string target_error_;                                         // the first such refusal
    std::size_t user_reads_ = 0, dept_reads_ = 0;                      // by-id reads asked for
    BatchOutcome out_;
};

EventProcessor::EventProcessor(const AgentConfig& config, const Mapping& mapping, Target& target, HistoryStore& history,
                               Journal& journal, ProcessorStats& stats)
    : config_(config),
      mapping_(mapping),
      target_(target),
      history_(history),
      journal_(journal),
      stats_(stats),
      client_(config.client) {
    load_outside();
}

std::string EventProcessor::scope_key() const {
    std::string k = "root " + std::to_string(config_.root_department) + "; include";
    for (auto id : mapping_.include_departments()) k += " " + std::to_string(id);
    k += "; exclude";
    for (auto id : mapping_.exclude_departments()) k += " " + std::to_string(id);
    return k;
}

// state.db's "outside_departments": the scope line, then the ids, one line of them. Found under
// another scope (the mapping changed), they are not used.
void EventProcessor::load_outside() {
    const std::string text = journal_.get("outside_departments").value_or("");
    const auto nl = text.find('\n');
    if (nl == std::string::npos || text.compare(0, nl, scope_key()) != 0) {
        // Found under another scope, or none: dropped, so that a return to that scope later
        // cannot bring back a list that went stale meanwhile.
        if (!text.empty()) journal_.set("outside_departments", "");
        return;
    }
    std::size_t i = nl + 1;
    while (i < text.size()) {
        const std::size_t end = std::min(text.find(' ', i), text.size());
        if (auto id = positive_id(text.substr(i, end - i))) outside_.insert(*id);
        i = end + 1;
    }
}

void EventProcessor::save_outside() {
    std::string text = scope_key() + "\n";
    for (auto id : outside_) text += std::to_string(id) + " ";
    journal_.set("outside_departments", text);
}

void EventProcessor::note_quota_exhausted() {
    journal_.set("quota_exhausted_month", Journal::this_month());
    stats_.quota_exhausted = true;
}

std::size_t EventProcessor::reads_needed(const std::vector<JournalEvent>& rows) {
    BatchObjects objects = objects_of(rows, mapping_);
    if (!cache_)
        if (auto current = target_.read()) cache_ = std::move(*current);
    if (cache_) drop_removals_not_held(objects, rows, *cache_);
    return objects.users.size() + objects.depts.size();
}

BatchOutcome EventProcessor::process(const std::vector<JournalEvent>& rows) {
    BatchOutcome out;
    if (rows.empty()) return out;
    BatchObjects objects = objects_of(rows, mapping_);
    // The target's state tells which removals need no call (objects it never held): read before
    // the first batch after a start or a full sync makes its calls, not after (it reads it anyway).
    if (!cache_)
        if (auto current = target_.read()) cache_ = std::move(*current);
    if (cache_) drop_removals_not_held(objects, rows, *cache_);
    if (!objects.nothing.empty() && journal_.mark_done(objects.nothing, 0)) out.handled += objects.nothing.size();
    if (objects.users.empty() && objects.depts.empty()) return out;

    if (journal_.get("quota_exhausted_month").value_or("") == Journal::this_month()) {
        stats_.quota_exhausted = true;
        out.retry_later = true;  // keep journaling; fetch again next month
        return out;
    }
    stats_.quota_exhausted = false;

    RunReporter reporter(history_, config_.secrets(), config_.progress_interval);
    if (auto r = reporter.start("event", rows.front().source, false); !r) {
        // No apply without its history record (issue 8): the events stay journaled.
        spdlog::warn("event batch not started: cannot record a history run: {}", r.error());
        out.retry_later = true;
        return out;
    }
    BatchOutcome batch = EventBatch(*this, rows, std::move(objects), reporter).run();
    batch.handled += out.handled;
    return batch;
}

}  // namespace dingbridge::agent::events
