#include "agent/org/plan.h"

#include <boost/test/unit_test.hpp>

#include "agent/dingtalk/limiter.h"
#include "agent/sync/build.h"

using namespace dingbridge::agent;

namespace {

OrgDepartment dept(const std::string& id, const std::string& parent, const std::string& name) {
    OrgDepartment d;
    d.external_id = id;
    d.parent_external_id = parent;
    d.name = name;
    return d;
}

OrgUser user(const std::string& id, const std::string& dept, const std::string& email) {
    OrgUser u;
    u.external_id = id;
    u.username = id;
    u.email = email;
    u.display_name = id;
    u.departments = {Membership{dept, 0, false}};
    u.primary_department = dept;
    return u;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(plan)

BOOST_AUTO_TEST_CASE(creates_parents_first_and_removes_children_first) {
    OrgSnapshot desired, current;
    desired.departments = {{"1", dept("1", "", "root")}, {"3", dept("3", "2", "c")}, {"2", dept("2", "1", "b")}};
    current.departments = {{"1", dept("1", "", "root")}, {"8", dept("8", "1", "x")}, {"9", dept("9", "8", "y")}};
    SyncPlan p = make_plan(desired, current, {});
    BOOST_REQUIRE_EQUAL(p.changes.size(), 4u);
    BOOST_TEST(p.changes[0].external_id == "2");
    BOOST_TEST(p.changes[1].external_id == "3");
    BOOST_TEST(p.changes[2].external_id == "9");
    BOOST_TEST(p.changes[3].external_id == "8");
}

BOOST_AUTO_TEST_CASE(rename_or_move_is_an_update_by_external_id) {
    OrgSnapshot desired, current;
    current.departments = {{"1", dept("1", "", "root")}, {"2", dept("2", "1", "b")}, {"3", dept("3", "1", "c")}};
    desired = current;
    desired.departments["2"].name = "renamed";
    desired.departments["3"].parent_external_id = "2";
    SyncPlan p = make_plan(desired, current, {});
    BOOST_TEST(p.counts.update_department == 2);
    BOOST_TEST(p.counts.total() == 2);
}

BOOST_AUTO_TEST_CASE(incomplete_read_computes_no_removals) {
    OrgSnapshot desired, current;
    current.departments = {{"1", dept("1", "", "root")}, {"2", dept("2", "1", "b")}};
    current.users = {{"a", user("a", "2", "a@x")}};
    desired.departments = {{"1", dept("1", "", "root")}};
    PlanOptions o;
    o.allow_removals = false;
    SyncPlan p = make_plan(desired, current, o);
    BOOST_TEST(p.changes.empty());
    BOOST_TEST(p.removals_suppressed);
    BOOST_TEST(p.suppressed_removals == 2);
}

BOOST_AUTO_TEST_CASE(unique_conflict_skips_the_later_user) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    current.users = {{"b", user("b", "1", "same@x")}};
    desired.users = {{"a", user("a", "1", "same@x")}, {"b", user("b", "1", "same@x")}};
    PlanOptions skip;
    skip.conflict_policy = ConflictPolicy::skip_user;
    SyncPlan p = make_plan(desired, current, skip);
    BOOST_TEST(p.changes.empty());
    BOOST_REQUIRE_EQUAL(p.skipped.size(), 1u);
    BOOST_TEST(p.skipped[0].external_id == "a");
    BOOST_TEST(p.skipped[0].reason.find("already used by user b") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(skip_user_keeps_an_existing_user_and_its_values) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    current.users = {{"a", user("a", "1", "a@x")}, {"b", user("b", "1", "b@x")}};
    // a wants b's e-mail (b keeps it): a stays as it is, so its own a@x stays taken too.
    desired.users = {{"a", user("a", "1", "b@x")}, {"b", user("b", "1", "b@x")}, {"c", user("c", "1", "a@x")}};
    PlanOptions skip;
    skip.conflict_policy = ConflictPolicy::skip_user;
    SyncPlan p = make_plan(desired, current, skip);
    BOOST_TEST(p.changes.empty());
    BOOST_REQUIRE_EQUAL(p.skipped.size(), 2u);
    std::set<std::string> ids{p.skipped[0].external_id, p.skipped[1].external_id};
    BOOST_TEST((ids == std::set<std::string>{"a", "c"}));
}

BOOST_AUTO_TEST_CASE(unique_conflict_clears_the_field_by_default_and_records_it) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    current.users = {{"b", user("b", "1", "same@x")}};
    desired.users = {{"a", user("a", "1", "same@x")}, {"b", user("b", "1", "same@x")}};
    SyncPlan p = make_plan(desired, current, {});
    BOOST_REQUIRE_EQUAL(p.changes.size(), 1u);
    BOOST_TEST((p.changes[0].kind == ChangeKind::create_user));
    BOOST_TEST(p.changes[0].user->email.empty());
    BOOST_TEST(p.changes[0].user->username == "a");
    BOOST_TEST(p.skipped.empty());
    BOOST_REQUIRE_EQUAL(p.conflicts.size(), 1u);
    BOOST_TEST(p.conflicts[0].reason.find("email 'same@x' is already used by user b; email left empty") !=
               std::string::npos);
}

// Applies a plan to a map of rows under UNIQUE(username, email, phone) like the SQLite target:
// returns the first step that would violate it.
std::string replay(const SyncPlan& p, std::map<std::string, OrgUser> rows) {
    for (const auto& c : p.changes) {
        if (c.kind == ChangeKind::delete_user) {
            rows.erase(c.external_id);
            continue;
        }
        if (!c.user) continue;
        OrgUser next = *c.user;
        for (const auto& [id, r] : rows) {
            if (id == c.external_id) continue;
            if ((!next.email.empty() && r.email == next.email) ||
                (!next.username.empty() && r.username == next.username) ||
                (!next.phone.empty() && r.phone == next.phone))
                return std::string(change_kind_name(c.kind)) + " " + c.external_id + " collides with " + id;
        }
        rows[c.external_id] = next;
    }
    return {};
}

// Enough users that the claim tables grow many times over (they start at 64 slots), with shared
// and swapped values spread through them: every conflict is found, no other user is touched, and
// the plan applies under UNIQUE in its order.
BOOST_AUTO_TEST_CASE(unique_values_of_thousands_of_users) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    const int n = 5000;
    auto id = [](int i) { return "u" + std::to_string(100000 + i); };
    std::set<std::string> expect_conflict;
    for (int i = 0; i < n; ++i) {
        OrgUser u = user(id(i), "1", "mail" + std::to_string(i) + "@example.com");
        u.phone = i % 3 ? "+86-1380000" + std::to_string(10000 + i) : "";
        if (i % 2 == 0) current.users.emplace(id(i), u);  // half exist already
        if (i % 10 == 7) {                                // wants the e-mail of an earlier, existing user who keeps it
            u.email = "mail" + std::to_string(i - 7) + "@example.com";
            expect_conflict.insert(id(i));
        }
        if (i % 100 == 50) u.username = id(i - 50);  // and some a username held by another
        if (i % 100 == 50) expect_conflict.insert(id(i));
        desired.users.emplace(id(i), u);
    }
    // A swap among existing users: staged, not a conflict.
    std::swap(desired.users.at(id(1000)).email, desired.users.at(id(2000)).email);
    SyncPlan p = make_plan(desired, current, {});
    std::set<std::string> got;
    for (const auto& c : p.conflicts) got.insert(c.external_id);
    BOOST_TEST(got == expect_conflict);
    BOOST_TEST(replay(p, current.users) == "");
    BOOST_TEST(p.counts.create_user == n / 2);
    int updates = 0;
    for (const auto& c : p.changes)
        if (c.kind == ChangeKind::update_user) {
            ++updates;
            BOOST_TEST(
                (expect_conflict.count(c.external_id.str()) || c.external_id == id(1000) || c.external_id == id(2000)),
                c.external_id.str() + ": " + c.detail.str());
        }
    BOOST_TEST(updates > 0);
}

BOOST_AUTO_TEST_CASE(a_removed_row_gives_its_values_to_a_new_hire) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    OrgUser gone = user("old", "1", "jo@x");
    gone.username = "jo";
    gone.phone = "+8613800000000";
    gone.active = false;
    current.removed_users["old"] = 100;
    current.removed_user_rows["old"] = gone;
    OrgUser hire = user("new", "1", "jo@x");
    hire.username = "jo";
    hire.phone = "+8613800000000";
    desired.users = {{"new", hire}};
    SyncPlan p = make_plan(desired, current, {});
    BOOST_TEST(p.conflicts.empty());
    BOOST_TEST(p.skipped.empty());
    BOOST_REQUIRE_EQUAL(p.changes.size(), 2u);
    BOOST_TEST((p.changes[0].kind == ChangeKind::disable_user));
    BOOST_TEST(p.changes[0].user->email.empty());
    BOOST_TEST(p.changes[0].user->username.empty());
    BOOST_TEST((p.changes[1].kind == ChangeKind::create_user));
    BOOST_TEST(p.changes[1].user->email == "jo@x");
    BOOST_TEST(p.counts.removals() == 0);
    BOOST_TEST(replay(p, {{"old", gone}}) == "");
}

BOOST_AUTO_TEST_CASE(a_swap_of_unique_values_is_staged) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    current.users = {{"a", user("a", "1", "a@x")}, {"b", user("b", "1", "b@x")}};
    desired.users = {{"a", user("a", "1", "b@x")}, {"b", user("b", "1", "a@x")}};
    SyncPlan p = make_plan(desired, current, {});
    BOOST_TEST(p.conflicts.empty());
    BOOST_TEST(replay(p, current.users) == "");
    // The final writes carry the swapped values.
    std::map<std::string, std::string> last;
    for (const auto& c : p.changes) last[c.external_id] = c.user->email;
    BOOST_TEST(last["a"] == "b@x");
    BOOST_TEST(last["b"] == "a@x");
    // A disabled user keeps no memberships.
    desired.users.erase("b");
    desired.users["a"] = user("a", "1", "a@x");
    SyncPlan d = make_plan(desired, current, {});
    BOOST_REQUIRE_EQUAL(d.changes.size(), 1u);
    BOOST_TEST((d.changes[0].kind == ChangeKind::disable_user));
    BOOST_TEST(d.changes[0].user->departments.empty());
}

// What a target's read_against() gives: every active row equal to the desired one as its id only.
OrgSnapshot kept_as_ids(const OrgSnapshot& current, const OrgSnapshot& desired) {
    OrgSnapshot c = current;
    for (auto it = c.users.begin(); it != c.users.end();) {
        auto d = desired.users.find(it->first);
        if (d != desired.users.end() && d->second == it->second) {
            c.users_as_desired.push_back(it->first);
            it = c.users.erase(it);
        } else {
            ++it;
        }
    }
    return c;
}

std::string describe(const SyncPlan& p) {
    std::string s;
    for (const auto& c : p.changes) {
        s += std::string(change_kind_name(c.kind)) + " " + c.external_id + " (" + c.detail + ")";
        if (c.user)
            s += " user=" + c.user->username + "/" + c.user->email + "/" + c.user->phone + "/" + c.user->title + "/" +
                 (c.user->active ? "active" : "inactive") + "/" + std::to_string(c.user->departments.size());
        s += "\n";
    }
    for (const auto& k : p.skipped) s += "skipped " + k.external_id + ": " + k.reason + "\n";
    for (const auto& k : p.conflicts) s += "conflict " + k.external_id + ": " + k.reason + "\n";
    return s + "removals " + std::to_string(p.counts.removals()) + ", suppressed " +
           std::to_string(p.suppressed_removals) + "\n";
}

// A resync reads users equal to the desired org as ids only (no second copy of a large org);
// the plan must be exactly the one made from their rows, whatever the policy.
BOOST_AUTO_TEST_CASE(users_read_as_ids_plan_exactly_like_their_rows) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    auto both = [&](const OrgUser& u) { desired.users[u.external_id] = current.users[u.external_id] = u; };
    both(user("a", "1", "a@x"));
    OrgUser b = user("b", "1", "b@x");
    b.phone = "+8613800000001";
    both(b);
    both(user("f", "1", "f@x"));  // frozen below
    both(user("x", "1", "dup@x"));
    both(user("y", "1", "dup@x"));  // a target without UNIQUE may hold a duplicate
    OrgUser c = user("c", "1", "c@x");
    current.users["c"] = c;
    c.title = "lead";
    desired.users["c"] = c;
    current.users["d"] = user("d", "1", "d@x");
    current.users["e"] = user("e", "1", "e@x");
    desired.users["d"] = user("d", "1", "e@x");  // a swap
    desired.users["e"] = user("e", "1", "d@x");
    desired.users["n"] = user("n", "1", "a@x");  // wants a's value
    current.users["gone"] = user("gone", "1", "gone@x");
    current.removed_users = {{"old", 100}, {"r", 100}};
    current.removed_user_rows["old"] = user("old", "1", "h@x");
    current.removed_user_rows["old"].active = false;
    desired.users["h"] = user("h", "1", "h@x");  // takes the removed row's value
    current.removed_user_rows["r"] = user("r", "1", "r@x");
    current.removed_user_rows["r"].active = false;
    desired.users["r"] = user("r", "1", "r@x");  // back in DingTalk

    const OrgSnapshot as_ids = kept_as_ids(current, desired);
    BOOST_TEST(as_ids.users_as_desired == (std::vector<std::string>{"a", "b", "f", "x", "y"}));
    BOOST_TEST(as_ids.user_count() == current.users.size());
    OrgSnapshot compacted = current;  // what a target without its own comparison gets
    keep_equal_users_as_ids(compacted, desired);
    BOOST_TEST(compacted.users_as_desired == as_ids.users_as_desired);
    BOOST_TEST((compacted.users == as_ids.users));

    std::vector<PlanOptions> variants(6);
    variants[1].conflict_policy = ConflictPolicy::skip_user;
    variants[2].delete_removed_users = true;
    variants[3].allow_removals = false;
    variants[4].frozen_users = {"f", "a"};
    variants[5].delete_disabled_before = 200;
    for (const auto& o : variants) {
        const std::string want = describe(make_plan(desired, current, o));
        BOOST_TEST_MESSAGE(want);
        BOOST_TEST(want.find(" n") != std::string::npos);  // created, cleared or skipped: never left out
        BOOST_TEST(describe(make_plan(desired, as_ids, o)) == want);
    }
}

// For a SCIM target (PlanOptions::managers_first) a new manager is created before its new
// reports, whatever their ids; an existing manager, a cycle and the default order are kept.
BOOST_AUTO_TEST_CASE(managers_first_creates_new_managers_before_their_reports) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    auto add = [&](const std::string& id, const std::string& manager) {
        OrgUser u = user(id, "1", id + "@x");
        u.manager = manager;
        desired.users[id] = u;
    };
    add("a1", "z9");  // report -> manager: a1 -> z9 and b2 -> m5 -> z9, each report's id first
    add("m5", "z9");
    add("b2", "m5");
    add("z9", "");
    add("c3", "old");  // manager already in the target
    add("x1", "y1");   // a manager cycle
    add("y1", "x1");
    desired.users["old"] = user("old", "1", "old@x");
    current.users["old"] = desired.users["old"];
    auto order = [&](bool managers_first) {
        PlanOptions po;
        po.managers_first = managers_first;
        std::vector<std::string> ids;
        for (const auto& c : make_plan(desired, current, po).changes)
            if (c.kind == ChangeKind::create_user) ids.push_back(std::string(c.external_id));
        return ids;
    };
    auto by_default = order(false);
    BOOST_TEST((by_default == std::vector<std::string>{"a1", "b2", "c3", "m5", "x1", "y1", "z9"}));
    auto first = order(true);
    BOOST_TEST((first == std::vector<std::string>{"c3", "y1", "z9", "a1", "m5", "x1", "b2"}));
}

BOOST_AUTO_TEST_CASE(removed_users_are_disabled_once) {
    OrgSnapshot desired, current;
    desired.departments = current.departments = {{"1", dept("1", "", "root")}};
    current.users = {{"a", user("a", "1", "a@x")}};
    SyncPlan p = make_plan(desired, current, {});
    BOOST_REQUIRE_EQUAL(p.changes.size(), 1u);
    BOOST_TEST((p.changes[0].kind == ChangeKind::disable_user));
    current.users.clear();
    current.removed_users["a"] = 100;
    BOOST_TEST(make_plan(desired, current, {}).changes.empty());
    // A row left with memberships (older versions) loses them once, not counted as a removal.
    current.removed_user_rows["a"] = user("a", "1", "a@x");
    SyncPlan m = make_plan(desired, current, {});
    BOOST_REQUIRE_EQUAL(m.changes.size(), 1u);
    BOOST_TEST(m.changes[0].user->departments.empty());
    BOOST_TEST(m.counts.removals() == 0);
    current.removed_user_rows["a"].departments.clear();
    BOOST_TEST(make_plan(desired, current, {}).changes.empty());
    PlanOptions o;
    o.delete_disabled_before = 200;
    BOOST_TEST(make_plan(desired, current, o).counts.delete_user == 1);
}

BOOST_AUTO_TEST_CASE(delete_limit_count_and_percent) {
    auto count = DeleteLimit::parse("5");
    BOOST_REQUIRE(count);
    BOOST_TEST(!count->exceeded(5, 100));
    BOOST_TEST(count->exceeded(6, 100).has_value());
    auto pct = DeleteLimit::parse("10%");
    BOOST_REQUIRE(pct);
    BOOST_TEST(!pct->exceeded(10, 100));
    BOOST_TEST(pct->exceeded(11, 100).has_value());
    BOOST_TEST(!DeleteLimit::parse("ten"));
    BOOST_TEST(!DeleteLimit::parse("150%"));
}

BOOST_AUTO_TEST_CASE(tree_validation_finds_missing_parent_and_cycle) {
    std::map<std::string, OrgDepartment> t = {{"1", dept("1", "", "r")}, {"2", dept("2", "7", "b")}};
    BOOST_TEST(validate_tree(t, "1").size() == 1u);
    t = {{"1", dept("1", "", "r")}, {"2", dept("2", "3", "b")}, {"3", dept("3", "2", "c")}};
    auto problems = validate_tree(t, "1");
    BOOST_REQUIRE(!problems.empty());
    BOOST_TEST(problems[0].find("cycle") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(multi_department_users_are_merged_with_per_department_order) {
    Mapping m = Mapping::load_string("{}");
    FetchedOrg f;
    dingtalk::DeptDetail root, a, b;
    root.dept_id = 1;
    root.name = "r";
    a.dept_id = 2;
    a.parent_id = 1;
    a.name = "a";
    a.manager_userids = {"boss"};
    b.dept_id = 3;
    b.parent_id = 1;
    b.name = "b";
    f.departments = {{1, root}, {2, a}, {3, b}};
    f.children = {{1, {2, 3}}};
    dingtalk::UserItem u;
    u.userid = "u";
    u.name = "U";
    u.dept_id_list = {3, 2};
    u.dept_order = 5;
    merge_user_item(f.users, 2, u);
    u.dept_order = 7;
    u.leader = true;
    merge_user_item(f.users, 3, u);
    dingtalk::UserItem boss;
    boss.userid = "boss";
    boss.name = "B";
    boss.dept_id_list = {2};
    merge_user_item(f.users, 2, boss);
    DesiredOrg d = build_desired(f, m);
    const OrgUser& out = d.snapshot.users.at("u");
    BOOST_REQUIRE_EQUAL(out.departments.size(), 2u);
    BOOST_TEST(out.primary_department == "3");
    BOOST_TEST(out.departments[0].order == 7);
    BOOST_TEST(out.departments[0].leader == true);
    BOOST_TEST(out.departments[1].order == 5);
    BOOST_TEST(out.manager == "");  // primary dept 3 has no leader, root none
    BOOST_TEST(d.snapshot.users.at("boss").manager == "");
    f.failed_departments.insert(3);
    DesiredOrg partial = build_desired(f, m);
    BOOST_TEST(partial.frozen_users.count("u") == 1u);
    BOOST_TEST(partial.frozen_departments.count("3") == 1u);
}

BOOST_AUTO_TEST_CASE(excluded_subtrees_and_include_roots) {
    // 1 -> 2 -> 4, 1 -> 3
    FetchedOrg f;
    auto d = [](std::int64_t id, std::int64_t parent) {
        dingtalk::DeptDetail x;
        x.dept_id = id;
        x.parent_id = parent;
        x.name = "d" + std::to_string(id);
        return x;
    };
    f.departments = {{1, d(1, 0)}, {2, d(2, 1)}, {3, d(3, 1)}, {4, d(4, 2)}};
    f.children = {{1, {2, 3}}, {2, {4}}};
    dingtalk::UserItem u;
    u.userid = "in4";
    u.name = "x";
    u.dept_id_list = {4, 3};
    merge_user_item(f.users, 4, u);
    merge_user_item(f.users, 3, u);
    DesiredOrg ex = build_desired(f, Mapping::load_string("sync:\n  exclude_departments: [2]\n"));
    BOOST_TEST(ex.snapshot.departments.size() == 2u);  // 1 and 3
    BOOST_TEST(ex.snapshot.users.at("in4").departments.size() == 1u);
    BOOST_TEST(ex.snapshot.users.at("in4").primary_department == "3");
    DesiredOrg in = build_desired(f, Mapping::load_string("sync:\n  include_departments: [2]\n"));
    BOOST_TEST(in.snapshot.departments.size() == 2u);  // 2 (now top-level) and 4
    BOOST_TEST(in.snapshot.departments.at("2").parent_external_id == "");
    BOOST_TEST(in.snapshot.departments.at("4").parent_external_id == "2");
    BOOST_TEST(in.snapshot.users.at("in4").primary_department == "4");
    DesiredOrg skip =
        build_desired(f, Mapping::load_string("sync:\n  skip_users:\n    - field: userid\n      equals: in4\n"));
    BOOST_TEST(skip.snapshot.users.empty());
    BOOST_TEST(skip.skipped.size() == 1u);
}

BOOST_AUTO_TEST_CASE(limiter_never_exceeds_rate) {
    dingbridge::agent::dingtalk::RateLimiter l(10, 1);
    auto t = std::chrono::steady_clock::time_point{} + std::chrono::seconds(100);
    std::chrono::steady_clock::time_point ready;
    int taken = 0;
    for (int ms = 0; ms < 1000; ++ms)
        if (l.try_take("/a", t + std::chrono::milliseconds(ms), ready)) ++taken;
    BOOST_TEST(taken <= 10);
    BOOST_TEST(taken >= 9);
    BOOST_TEST(l.try_take("/b", t, ready));  // per API
    dingbridge::agent::dingtalk::RateLimiter total(5, 1);
    BOOST_TEST(total.available("*", t, ready));
    BOOST_TEST(total.available("*", t, ready));  // peeking takes nothing
    BOOST_TEST(total.try_take("*", t, ready));
    BOOST_TEST(!total.available("*", t, ready));
    BOOST_TEST((ready - t == std::chrono::milliseconds(200)));
}

// A client that always wakes a little late (0-3 ms) after being told to wait, at qps 19: the
// per-API burst keeps its rate at 19/s, and no one-second window holds more than 20 calls.
BOOST_AUTO_TEST_CASE(limiter_keeps_the_rate_of_a_late_client_within_the_window) {
    using dingbridge::agent::dingtalk::RateLimiter;
    using namespace std::chrono;
    RateLimiter l(19, RateLimiter::api_burst);
    const auto start = steady_clock::time_point{} + seconds(100);
    auto t = start;
    steady_clock::time_point ready;
    std::vector<steady_clock::time_point> sent;
    for (int late = 0; t < start + seconds(60); late = (late + 1) % 4) {
        if (l.try_take("/a", t, ready))
            sent.push_back(t);
        else
            t = ready + milliseconds(late);
    }
    BOOST_TEST(sent.size() >= 19u * 60 - 2, sent.size() << " calls in 60 s");
    std::size_t most = 0;
    for (std::size_t i = 0, j = 0; i < sent.size(); ++i) {
        while (sent[i] - sent[j] >= seconds(1)) ++j;
        most = std::max(most, i - j + 1);
    }
    BOOST_TEST(most <= 20u);
    BOOST_TEST(most >= 19u);
}

BOOST_AUTO_TEST_CASE(limiter_backs_off_on_throttle_and_recovers) {
    using dingbridge::agent::dingtalk::RateLimiter;
    RateLimiter l(20, 1);
    auto t = std::chrono::steady_clock::time_point{} + std::chrono::seconds(100);
    std::chrono::steady_clock::time_point ready;
    BOOST_TEST(l.try_take("/a", t, ready));
    BOOST_TEST(l.on_throttle("/a", t));
    BOOST_TEST(l.rate("/a") == 10.0);
    // The other answers of the same burst do not cut again within a second.
    BOOST_TEST(!l.on_throttle("/a", t + std::chrono::milliseconds(300)));
    BOOST_TEST(l.rate("/a") == 10.0);
    BOOST_TEST(l.on_throttle("/a", t + std::chrono::milliseconds(1300)));
    BOOST_TEST(l.rate("/a") == 5.0);
    BOOST_TEST(l.rate("/b") == 20.0);  // per API
    // Calls now come at the lowered rate: at most 5 in a second.
    int taken = 0;
    auto t2 = t + std::chrono::seconds(3);
    for (int ms = 0; ms < 1000; ++ms)
        if (l.try_take("/a", t2 + std::chrono::milliseconds(ms), ready)) ++taken;
    BOOST_TEST(taken <= 6);
    BOOST_TEST(taken >= 4);
    // Never below the floor.
    for (int i = 0; i < 20; ++i) (void)l.on_throttle("/a", t + std::chrono::seconds(10 + 2 * i));
    BOOST_TEST(l.rate("/a") == RateLimiter::min_rate);
    // Successes bring it back to the configured rate, not above.
    for (int i = 0; i < 200; ++i) l.on_success("/a");
    BOOST_TEST(l.rate("/a") == 20.0);
}

// The full sync and the event patch read a user's departments the same way.
BOOST_AUTO_TEST_CASE(memberships_follow_dept_id_list_then_pages_with_the_pages_order_and_leader_flag) {
    dingtalk::MergedUser m;
    m.item.dept_id_list = {5, 3, 9};
    m.places = {{3, 20, true}, {7, 30, false}, {5, 10, false}, {8, 40, true}};
    const auto places = user_memberships(m, [](std::int64_t dept) { return dept != 9 && dept != 8; });
    const std::vector<Membership> want = {{"5", 10, false}, {"3", 20, true}, {"7", 30, false}};
    BOOST_TEST((places == want));
    BOOST_TEST(user_memberships(m, [](std::int64_t) { return false; }).empty());
}

// Managers from leaders: the first leader of the primary department that is a synced user other
// than the user, else of the nearest ancestor with one; leaders who are not synced users are
// dropped from the departments (kept after an incomplete read, when they may just not have been
// seen).
BOOST_AUTO_TEST_CASE(managers_are_the_first_synced_leader_other_than_the_user_up_the_tree) {
    OrgSnapshot s;
    s.departments = {{"1", dept("1", "", "root")},
                     {"2", dept("2", "1", "a")},
                     {"3", dept("3", "2", "b")},
                     {"4", dept("4", "1", "c")}};
    s.departments["1"].leaders = {"ceo"};
    s.departments["2"].leaders = {"gone", "lead2", "lead2b"};  // "gone" is no synced user
    s.departments["3"].leaders = {"gone"};                     // none known: up to department 2
    s.departments["4"].leaders = {"solo"};                     // its own leader: up to the root
    for (auto [id, d] : {std::pair{"ceo", "1"}, {"lead2", "2"}, {"lead2b", "2"}, {"u3", "3"}, {"solo", "4"}})
        s.users.emplace(id, user(id, d, std::string(id) + "@x"));
    OrgSnapshot trusted = s;
    derive_managers(s, {}, false, ManagerSource::leaders);
    BOOST_TEST(s.users.at("u3").manager == "lead2");
    BOOST_TEST(s.users.at("lead2").manager == "lead2b");  // the first leader other than the user
    BOOST_TEST(s.users.at("lead2b").manager == "lead2");
    BOOST_TEST(s.users.at("solo").manager == "ceo");
    BOOST_TEST(s.users.at("ceo").manager == "");
    BOOST_TEST((s.departments.at("2").leaders == std::vector<std::string>{"lead2", "lead2b"}));
    BOOST_TEST(s.departments.at("3").leaders.empty());
    // A frozen user (in a department that failed to read) counts as known.
    OrgSnapshot frozen = trusted;
    derive_managers(frozen, {"gone"}, false, ManagerSource::leaders);
    BOOST_TEST(frozen.users.at("u3").manager == "gone");
    BOOST_TEST(frozen.users.at("lead2").manager == "gone");
    BOOST_TEST((frozen.departments.at("2").leaders == std::vector<std::string>{"gone", "lead2", "lead2b"}));
    // After an incomplete read every leader is kept.
    derive_managers(trusted, {}, true, ManagerSource::leaders);
    BOOST_TEST(trusted.users.at("u3").manager == "gone");
    BOOST_TEST(trusted.departments.at("3").leaders.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
