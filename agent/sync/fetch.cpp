#include "agent/sync/fetch.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "agent/dingtalk/explain.h"

namespace dingbridge::agent {

using dingtalk::ApiFailure;
using dingtalk::DeptSummary;
using dingtalk::FailureKind;

namespace {

// Walks the tree; every callback queues the follow-up calls (BFS order).
class TreeWalk {
public:
    TreeWalk(dingtalk::ContactsApi& api, const Mapping& mapping, const FetchSettings& settings, RunReporter& reporter)
        : api_(api),
          mapping_(mapping),
          reporter_(reporter),
          counters_(reporter.counters()),
          use_list_(settings.use_department_list) {
        fetched_.root_id = settings.root_department;
    }

    // The answer of one of the two reads of the tree: keeps the list and marks it read.
    auto tree_answer(std::vector<DeptSummary>& into, bool& read) {
        return [this, &into, &read](std::vector<DeptSummary>&& list) {
            into = std::move(list);
            read = true;
            tree_check_done();
        };
    }

    // The tree with the fewest calls: the legacy recursive /department/list (one call) checked
    // against listsub of the root; when they disagree (or the list fails) the walk falls back to
    // listsub per department. department/get only when the mapping needs it (and for the root).
    void start() {
        need_get_ = mapping_.needs_department_get();
        fetched_.leaders_from_pages = !need_get_;
        const std::int64_t root = fetched_.root_id;
        detail(root, true);
        if (synced(root, false)) page(root, 0);
        if (use_list_) {
            api_.department_tree(root, tree_answer(legacy_, legacy_ok_), [this](const ApiFailure& f) {
                spdlog::warn("{}; reading the tree with listsub instead", f.message());
                tree_check_done();
            });
        } else {
            ++tree_answers_;  // only the root's listsub is awaited; it starts the listsub walk
        }
        api_.listsub(root, tree_answer(root_kids_, root_listsub_ok_), [this, root](const ApiFailure& f) {
            fail(root, f);
            tree_check_done();
        });
    }
    FetchedOrg& fetched() { return fetched_; }
    bool root_failed() const { return root_failed_; }

private:
    // Whether `id` (a child of a synced department when `parent_synced`) is synced: inside an
    // include_departments subtree (everything, without includes). Only a synced department's
    // details and members are read: with include_departments the rest of the tree is walked to
    // find the subtrees, and costs no other call.
    bool synced(std::int64_t id, bool parent_synced) {
        const auto& includes = mapping_.include_departments();
        const bool in =
            includes.empty() || parent_synced || std::find(includes.begin(), includes.end(), id) != includes.end();
        if (in) synced_.insert(id);
        return in;
    }
    bool is_synced(std::int64_t id) const { return synced_.count(id) > 0; }

    void fail(std::int64_t dept, const ApiFailure& f) {
        fetched_.failed_departments.insert(dept);
        reporter_.item_failed(RunItem{"fetch", "department", std::to_string(dept), f.api, f.message()});
    }

    // A child seen under `parent` for the first time is kept (and true returned); a second
    // listing is a problem of the tree.
    bool adopt(std::int64_t parent, const DeptSummary& d) {
        if (!seen_.insert(d.dept_id).second) {
            fetched_.problems.push_back("department " + std::to_string(d.dept_id) + " is listed twice (under " +
                                        std::to_string(parent) + ")");
            return false;
        }
        fetched_.children[parent].push_back(d.dept_id);
        if (mapping_.exclude_departments().count(d.dept_id)) return false;
        summaries_[d.dept_id] = d;
        return true;
    }

    void tree_check_done() {
        if (++tree_answers_ < 2 || !root_listsub_ok_) return;  // root listsub failed: subtree unknown
        std::set<std::int64_t> from_list, from_listsub;
        for (const auto& d : legacy_)
            if (d.parent_id == fetched_.root_id) from_list.insert(d.dept_id);
        for (const auto& d : root_kids_) from_listsub.insert(d.dept_id);
        if (legacy_ok_ && from_list == from_listsub) {
            walk_legacy_list();
        } else {
            if (legacy_ok_)
                spdlog::warn(
                    "/department/list and listsub disagree on the children of department {} ({} vs {}); "
                    "reading the tree with listsub",
                    fetched_.root_id, from_list.size(), from_listsub.size());
            children_of(fetched_.root_id, root_kids_);
        }
        legacy_.clear();
    }

    // Breadth first from the root through the recursive list, as the listsub walk would visit.
    void walk_legacy_list() {
        fetched_.tree_from_list = true;
        std::map<std::int64_t, std::vector<const DeptSummary*>> kids;
        for (const auto& d : legacy_) kids[d.parent_id].push_back(&d);
        std::vector<std::int64_t> queue{fetched_.root_id};
        for (std::size_t i = 0; i < queue.size(); ++i) {
            const std::int64_t id = queue[i];
            fetched_.children[id];  // a leaf too has its (empty) list of children
            for (const auto* d : kids[id]) {
                if (!adopt(id, *d)) {
                    if (mapping_.exclude_departments().count(d->dept_id)) note_below_excluded(kids, d->dept_id);
                    continue;
                }
                if (synced(d->dept_id, is_synced(id))) {
                    detail(d->dept_id, false);
                    page(d->dept_id, 0);
                } else {
                    summaries_.erase(d->dept_id);
                }
                queue.push_back(d->dept_id);
            }
        }
    }

    void note_below_excluded(std::map<std::int64_t, std::vector<const DeptSummary*>>& kids, std::int64_t top) {
        std::vector<std::int64_t> queue{top};
        for (std::size_t i = 0; i < queue.size() && queue.size() <= legacy_.size(); ++i)
            for (const auto* d : kids[queue[i]]) {
                queue.push_back(d->dept_id);
                fetched_.below_excluded.push_back(d->dept_id);
            }
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
        api_.department_get(
            id,
            [this, id](dingtalk::DeptDetail&& d) {
                fetched_.departments[id] = std::move(d);
                ++counters_.departments_fetched;
            },
            [this, id](const ApiFailure& f) {
                fail(id, f);
                // Without the root (its name) nothing is applied: stop calling DingTalk now
                // rather than read the whole org for nothing.
                if (id == fetched_.root_id && !dingtalk::DingTalkClient::fatal(f)) {
                    root_failed_ = true;
                    api_.client().abort(f);
                }
            });
    }

    void children_of(std::int64_t id, const std::vector<DeptSummary>& list) {
        fetched_.children[id];  // a leaf too has its (empty) list of children
        for (const auto& d : list)
            if (adopt(id, d)) visit(d.dept_id, synced(d.dept_id, is_synced(id)));
    }

    // The listsub walk (fallback): listsub of one department, and its details and user pages
    // when it is synced.
    void visit(std::int64_t id, bool synced) {
        if (synced)
            detail(id, false);
        else
            summaries_.erase(id);
        api_.listsub(
            id, [this, id](std::vector<DeptSummary>&& kids) { children_of(id, kids); },
            [this, id](const ApiFailure& f) { fail(id, f); });
        if (synced) page(id, 0);
    }

    void page(std::int64_t id, std::int64_t cursor) {
        api_.user_page(
            id, cursor,
            [this, id](dingtalk::UserPage&& p) {
                counters_.users_fetched += static_cast<std::int64_t>(p.users.size());
                for (auto& u : p.users) {
                    if (u.leader && fetched_.leaders_from_pages) fetched_.page_leaders[id].push_back(u.userid);
                    merge_user_item(fetched_.users, id, u);
                }
                if (p.has_more) page(id, p.next_cursor);
            },
            [this, id](const ApiFailure& f) { fail(id, f); });
    }

    dingtalk::ContactsApi& api_;
    const Mapping& mapping_;
    RunReporter& reporter_;
    RunCounters& counters_;
    FetchedOrg fetched_;
    std::set<std::int64_t> seen_;
    std::set<std::int64_t> synced_;  // departments inside the synced scope (synced())
    bool need_get_ = true;
    std::map<std::int64_t, DeptSummary> summaries_;  // listed, department/get skipped
    std::vector<DeptSummary> legacy_, root_kids_;
    bool legacy_ok_ = false, root_listsub_ok_ = false;
    bool root_failed_ = false;  // the root's department/get failed: the run was stopped
    bool use_list_ = true;
    int tree_answers_ = 0;
};

// manager_source: dingtalk: 直属主管 is only in v2/user/get, one call per user.
void fetch_managers(dingtalk::ContactsApi& api, FetchedOrg& fetched, RunReporter& reporter) {
    for (auto& [userid, merged] : fetched.users) {
        auto& m = merged;  // clang 14 (the fuzz build) cannot capture a structured binding
        api.user_get(
            userid, [&m](dingtalk::UserDetail&& d) { m.manager_userid = std::move(d.manager_userid); },
            [&fetched, &reporter, id = userid](const ApiFailure& f) {
                if (f.kind == FailureKind::not_found) return;  // left meanwhile: no manager
                fetched.failed_users.insert(id);
                reporter.item_failed(RunItem{"fetch", "user", id, f.api, f.message()});
            });
    }
}

}  // namespace

void update_call_counters(RunCounters& c, const dingtalk::ClientStats& stats) {
    c.requests = static_cast<std::int64_t>(stats.requests);
    c.retries = static_cast<std::int64_t>(stats.retries);
    c.throttled = static_cast<std::int64_t>(stats.throttled);
}

Result<FetchedOrg> fetch_org(dingtalk::ContactsApi& api, const Mapping& mapping, const FetchSettings& settings,
                             RunReporter& reporter) {
    TreeWalk walk(api, mapping, settings, reporter);
    walk.start();
    RunCounters& c = reporter.counters();
    const auto& stats = api.client().stats();
    auto tick = [&] {
        update_call_counters(c, stats);
        reporter.progress("fetching: " + std::to_string(c.departments_fetched) + " departments, " +
                              std::to_string(c.users_fetched) + " users, " + std::to_string(c.requests) + " requests",
                          std::to_string(c.departments_fetched) + " departments, " + std::to_string(c.users_fetched) +
                              " users fetched, " + std::to_string(c.requests) + " requests, " +
                              std::to_string(c.retries) + " retries");
    };
    auto fatal = api.run(tick);
    FetchedOrg& fetched = walk.fetched();
    if (!fatal && mapping.manager_source() == ManagerSource::dingtalk) {
        fetch_managers(api, fetched, reporter);
        fatal = api.run(tick);
    }
    reporter.clear_line();
    tick();
    reporter.clear_line();
    if (fatal && walk.root_failed())
        return fail("the root department " + std::to_string(settings.root_department) + " could not be read (" +
                    dingtalk::explain_failure(*fatal, settings.via_proxy) +
                    "); nothing was applied, and no further call was made");
    if (fatal) return fail(dingtalk::explain_failure(*fatal, settings.via_proxy));
    if (!fetched.departments.count(settings.root_department))
        return fail("the root department " + std::to_string(settings.root_department) +
                    " could not be read; nothing was applied");
    return std::move(fetched);
}

}  // namespace dingbridge::agent
