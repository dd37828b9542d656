"""dingbridge-agent, issue 8 (round 2): each class reproduces one defect against the real
dingtalk-sim + dingbridge-proxy + dingbridge-agent (see agent_env.py). Each class is one ctest
entry (agent_<Class>)."""
import json
import sqlite3
import sys
import threading
import time
import re
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_env  # noqa: E402
from agent_env import Env, expected_org, target_org, diff_orgs  # noqa: E402


def rows(env, sql, *args):
    con = sqlite3.connect(str(env.target_db()))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def mapping_with(extra_sync):
    text = (agent_env.REPO / "configs" / "mapping.yaml").read_text()
    assert text.count("\nsync:\n") == 1
    return text.replace("\nsync:\n", "\nsync:\n" + extra_sync)


class Rehire(unittest.TestCase):
    """Defect 1: a departed user's unique values must not block a new hire forever."""

    def test_new_hire_reusing_a_departed_users_email_phone_and_username(self):
        env = Env(generate="users=30,departments=4,depth=2,seed=6")
        self.addCleanup(env.stop)
        env.sim.admin("POST", "/_sim/user/create", {"userid": "leaver", "name": "Jo Old", "dept_id_list": [1],
                                                    "email": "jo@example.com", "mobile": "13800000001"})
        env.agent("sync", check=0)
        env.sim.admin("POST", "/_sim/user/remove", {"userid": "leaver"})
        env.agent("sync", check=0)
        self.assertEqual(rows(env, "SELECT active FROM users WHERE external_id='leaver'"), [(0,)])
        # The new hire gets the same e-mail (so the same derived username) and the recycled phone.
        env.sim.admin("POST", "/_sim/user/create", {"userid": "hire", "name": "Jo New", "dept_id_list": [1],
                                                    "email": "jo@example.com", "mobile": "13800000001"})
        p = env.agent("sync")
        run = env.history()[0]
        self.assertEqual((p.returncode, run["status"]), (0, "succeeded"), p.stdout + p.stderr)
        hire = target_org(env.target_db())["users"]["hire"]
        self.assertEqual((hire["username"], hire["email"], hire["phone"]), ("jo", "jo@example.com", "+8613800000001"))
        # The departed row stays disabled; it gave its values up.
        self.assertEqual(rows(env, "SELECT active, username, email, phone FROM users WHERE external_id='leaver'"),
                         [(0, None, None, None)])
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["counts"]["changes_planned"], 0)


class Swap(unittest.TestCase):
    """Defect 2: two users swapping a unique value converge in one run."""

    def test_two_users_swap_their_emails(self):
        env = Env(generate="users=30,departments=4,depth=2,seed=6")
        self.addCleanup(env.stop)
        for uid, mail in (("sw-a", "alpha@example.com"), ("sw-b", "beta@example.com")):
            env.sim.admin("POST", "/_sim/user/create", {"userid": uid, "name": uid, "dept_id_list": [1],
                                                        "email": mail, "mobile": "1390000000" + uid[-1:].replace("a", "1").replace("b", "2")})
        env.agent("sync", check=0)
        env.sim.admin("POST", "/_sim/user/update", {"userid": "sw-a", "email": "beta@example.com",
                                                    "mobile": "13900000002"})
        env.sim.admin("POST", "/_sim/user/update", {"userid": "sw-b", "email": "alpha@example.com",
                                                    "mobile": "13900000001"})
        p = env.agent("sync")
        run = env.history()[0]
        self.assertEqual((p.returncode, run["status"]), (0, "succeeded"), p.stdout + p.stderr)
        users = target_org(env.target_db())["users"]
        self.assertEqual((users["sw-a"]["email"], users["sw-a"]["username"]), ("beta@example.com", "beta"))
        self.assertEqual((users["sw-b"]["email"], users["sw-b"]["username"]), ("alpha@example.com", "alpha"))
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["counts"]["changes_planned"], 0)


class DuplicateEmail(unittest.TestCase):
    """Defect 3: the later user of a duplicate e-mail is imported with the field left empty, recorded."""

    def _two(self, env):
        env.agent("sync", check=0)
        for uid in ("dup-a", "dup-b"):
            env.sim.admin("POST", "/_sim/user/create", {"userid": uid, "name": uid, "dept_id_list": [1],
                                                        "email": "same@example.com"})

    def test_clear_field_is_the_default_and_recorded(self):
        env = Env(generate="users=40,departments=5,depth=2,seed=3")
        self.addCleanup(env.stop)
        self._two(env)
        p = env.agent("sync", check=0)
        self.assertIn("conflicts: 2", p.stdout)
        run = env.history()[0]
        self.assertEqual(run["counts"]["create_user"], 2)
        items = env.run_detail(run["id"])["items"]
        self.assertEqual(sorted((i["external_id"], i["operation"]) for i in items),
                         [("dup-b", "conflict"), ("dup-b", "conflict")])
        # Every item carries the time it was recorded.
        self.assertTrue(all(len(i["at"]) == 24 and i["at"].endswith("Z") for i in items), items)
        text = " ".join(i["error"] for i in items)
        self.assertIn("username 'same' is already used by user dup-a", text)
        self.assertIn("email 'same@example.com' is already used by user dup-a; email left empty", text)
        users = target_org(env.target_db())["users"]
        self.assertEqual(users["dup-a"]["email"], "same@example.com")
        self.assertEqual((users["dup-b"]["email"], users["dup-b"]["username"]), ("", ""))
        self.assertEqual(users["dup-b"]["display_name"], "dup-b")
        # Recorded again on every run while the conflict lasts, with no change planned.
        env.agent("sync", check=0)
        run = env.history()[0]
        self.assertEqual(run["counts"]["changes_planned"], 0)
        self.assertEqual(len(env.run_detail(run["id"])["items"]), 2)

    def test_skip_user_policy(self):
        env = Env(generate="users=40,departments=5,depth=2,seed=3",
                  mapping_text=mapping_with("  conflict_policy: skip_user\n").replace(
                      "  conflict_policy: clear_field\n", ""))
        self.addCleanup(env.stop)
        self._two(env)
        p = env.agent("sync", check=0)
        self.assertIn("skipped: 1", p.stdout)
        items = env.run_detail(env.history()[0]["id"])["items"]
        self.assertEqual([(i["external_id"], i["operation"]) for i in items], [("dup-b", "skip")])
        self.assertNotIn("dup-b", target_org(env.target_db())["users"])


class DisabledMemberships(unittest.TestCase):
    """Defect 4: a disabled user keeps no department memberships."""

    def test_disabled_user_is_no_longer_a_member(self):
        env = Env(generate="users=30,departments=4,depth=2,seed=6")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        victim = env.sim.org()["users"][2]["userid"]
        self.assertTrue(rows(env, "SELECT 1 FROM user_departments WHERE user_external_id=?", victim))
        env.sim.admin("POST", "/_sim/user/remove", {"userid": victim})
        env.agent("sync", check=0)
        self.assertEqual(rows(env, "SELECT active FROM users WHERE external_id=?", victim), [(0,)])
        self.assertEqual(rows(env, "SELECT * FROM user_departments WHERE user_external_id=?", victim), [])
        # A row an older version left with memberships loses them on the next run, and that
        # is not counted as a removal.
        con = sqlite3.connect(str(env.target_db()))
        con.execute("INSERT INTO user_departments VALUES(?, '1', 0, 0, 0)", (victim,))
        con.commit()
        con.close()
        env.agent("sync", check=0)
        run = env.history()[0]
        self.assertEqual((run["counts"]["disable_user"], run["counts"]["update_user"]), (0, 1))
        self.assertEqual(rows(env, "SELECT * FROM user_departments WHERE user_external_id=?", victim), [])


class TruncatedRoot(unittest.TestCase):
    """Defect 5: a truncated answer (here the root department's department/get) is retried like 5xx."""

    def test_truncated_root_department_get_is_retried(self):
        env = Env(generate="users=60,departments=8,depth=2,seed=5")
        self.addCleanup(env.stop)
        # The root's department/get is the first one the agent sends.
        env.sim.admin("POST", "/_sim/faults", [
            {"path": "/topapi/v2/department/get", "kind": "truncated", "count": 1},
            {"path": "/topapi/v2/user/list", "kind": "malformed", "count": 1}])
        p = env.agent("sync")
        run = env.history()[0]
        self.assertEqual((p.returncode, run["status"]), (0, "succeeded"), p.stdout + p.stderr)
        self.assertGreaterEqual(run["counts"]["retries"], 2)
        self.assertEqual(env.run_detail(run["id"])["items"], [])
        self.assertTrue(all(f["remaining"] == 0 for f in env.sim.admin("GET", "/_sim/faults")))
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])


class AdaptiveRate(unittest.TestCase):
    """Defect 6: configured faster than DingTalk allows, the agent lowers its rate on 90018 and
    the run ends with no department failed."""

    def test_qps_above_dingtalks_limit_adapts(self):
        env = Env(generate="users=300,departments=40,depth=3,seed=8", qps=4, agent_qps=20, concurrency=4)
        self.addCleanup(env.stop)
        p = env.agent("sync")
        run = env.history()[0]
        items = env.run_detail(run["id"])["items"]
        self.assertEqual((p.returncode, run["status"], items), (0, "succeeded", []), p.stderr[-3000:])
        stats = env.sim.stats()
        self.assertGreater(stats["throttled"], 0, "the simulator's limit was never reached")
        self.assertIn("lowering this API's rate", p.stderr)
        # Far fewer throttled answers than calls: the rate itself came down.
        self.assertLess(stats["throttled"], stats["total_calls"] // 2, stats)
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])


class LockedStateDb(unittest.TestCase):
    """Defect 7: no apply without its history record."""

    def test_locked_state_database_applies_nothing(self):
        env = Env(generate="users=40,departments=5,depth=2,seed=3")
        self.addCleanup(env.stop)
        env.agent("history", check=0)  # creates state.db
        con = sqlite3.connect(str(env.state / "state.db"), isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        try:
            p = env.agent("sync", timeout=120)
        finally:
            con.execute("ROLLBACK")
            con.close()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("cannot record the run in the state database", p.stdout + p.stderr)
        self.assertNotIn("run 0", p.stdout)
        self.assertEqual(target_org(env.target_db())["users"], {})
        self.assertEqual(env.history(), [])
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["status"], "succeeded")
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])


class PartialRun(unittest.TestCase):
    """Defect 9: a partial run lists the departments it left untouched."""

    def test_untouched_departments_are_listed(self):
        env = Env(generate="users=60,departments=8,depth=2,seed=5")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        dept_ids = {str(d["dept_id"]) for d in env.sim.org()["departments"]}
        sub = [d for d in env.sim.org()["departments"] if d.get("parent_id") == 1][0]
        # Every listsub of that department fails: its subtree is unknown.
        env.sim.admin("POST", "/_sim/faults", {"path": "/topapi/v2/department/listsub", "kind": "busy",
                                               "probability": 1.0})
        p = env.agent("sync")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        run = env.history()[0]
        self.assertEqual(run["status"], "partial")
        items = env.run_detail(run["id"])["items"]
        untouched = {i["external_id"] for i in items if i["operation"] == "untouched"}
        self.assertEqual(untouched, dept_ids)
        self.assertTrue(str(sub["dept_id"]) in untouched)


class ManagerFromDingTalk(unittest.TestCase):
    """Point 8: manager_source: dingtalk takes 直属主管 (manager_userid) from v2/user/get, cycles
    kept; leaders (the default) costs no user/get call."""

    ORG = {
        "departments": [{"dept_id": 1, "name": "Root"}, {"dept_id": 2, "name": "研发部", "parent_id": 1}],
        "users": [
            {"userid": "boss", "name": "Boss", "dept_id_list": [1], "leader_in_dept": [{"dept_id": 1, "leader": True}]},
            {"userid": "a", "name": "A", "dept_id_list": [2], "manager_userid": "b"},
            {"userid": "b", "name": "B", "dept_id_list": [2], "manager_userid": "a"},
            {"userid": "c", "name": "C 🚀", "dept_id_list": [2, 1], "manager_userid": "a"},
            {"userid": "d", "name": "D", "dept_id_list": [2], "manager_userid": "ghost"},
            {"userid": "e", "name": "E", "dept_id_list": [2]},
        ],
    }

    def _env(self, source):
        import tempfile
        self.fixture = Path(tempfile.mkdtemp()) / "org.json"
        self.fixture.write_text(json.dumps(self.ORG))
        return Env(generate=None, sim_extra=("--org", str(self.fixture)),
                   mapping_text=mapping_with(f"  manager_source: {source}\n").replace(
                       "  manager_source: leaders\n", ""))

    def test_manager_from_dingtalk_with_a_cycle(self):
        env = self._env("dingtalk")
        self.addCleanup(env.stop)
        p = env.agent("sync", check=0)
        users = target_org(env.target_db())["users"]
        managers = {u: users[u]["manager"] for u in users}
        self.assertEqual(managers, {"boss": "", "a": "b", "b": "a", "c": "a", "d": "", "e": ""})
        stats = env.sim.stats()
        self.assertEqual(stats["apis"]["/topapi/v2/user/get"]["calls"], 6)  # one per user
        self.assertIn("/topapi/v2/user/get 6", p.stdout)
        # A change of 直属主管 in DingTalk reaches the target; nothing else changes.
        env.sim.admin("POST", "/_sim/user/update", {"userid": "e", "manager_userid": "c"})
        env.agent("sync", check=0)
        run = env.history()[0]
        self.assertEqual(run["counts"]["update_user"], 1)
        self.assertEqual(target_org(env.target_db())["users"]["e"]["manager"], "c")

    def test_manager_from_leaders_costs_no_user_get(self):
        env = self._env("leaders")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        users = target_org(env.target_db())["users"]
        self.assertEqual(users["a"]["manager"], "boss")
        self.assertEqual(users["boss"]["manager"], "")
        self.assertNotIn("/topapi/v2/user/get", env.sim.stats()["apis"])


def expected_pages(dump):
    members = {}
    for u in dump["users"]:
        for d in u["dept_id_list"]:
            members[d] = members.get(d, 0) + 1
    return sum(max(1, -(-members.get(d["dept_id"], 0) // 100)) for d in dump["departments"])


class CallBudget(unittest.TestCase):
    """Fetch only what the mapping needs: the tree in one /department/list call (checked against
    listsub of the root), department/get only when the mapping reads get-only fields."""

    def test_default_mapping(self):
        env = Env(generate="users=900,departments=40,depth=3,seed=12")
        self.addCleanup(env.stop)
        dump = env.sim.org()
        p = env.agent("sync", "--dry-run", check=0)
        apis = {k: v["calls"] for k, v in env.sim.stats()["apis"].items()}
        n_depts = len(dump["departments"])
        want = {"/gettoken": 1, "/department/list": 1, "/topapi/v2/department/listsub": 1,
                "/topapi/v2/department/get": n_depts, "/topapi/v2/user/list": expected_pages(dump)}
        self.assertEqual(apis, want)
        self.assertIn(f"DingTalk calls for a full sync: {sum(want.values())} ", p.stdout)
        env.agent("sync", check=0)
        self.assertEqual(diff_orgs(expected_org(dump), target_org(env.target_db())), [])
        # Both syncs, the dry run too, spent the month's quota: `history` counts them (the
        # simulator saw every call; token fetches may be left out of a run's own count).
        sim_calls = sum(v["calls"] for v in env.sim.stats()["apis"].values())
        h = env.agent("history", check=0).stdout
        m = re.search(r"calls this month: (\d+) \(full syncs (\d+), events 0\)", h)
        self.assertIsNotNone(m, h)
        self.assertEqual(m.group(1), m.group(2))
        self.assertLessEqual(int(m.group(1)), sim_calls)
        self.assertGreaterEqual(int(m.group(1)), sim_calls - 2)
        # check-config --online estimates the same from two calls (/department/list, user/count),
        # after one probe per contact API (user/get about the member user/list gave): seven
        # metered calls in all, whatever the org's size.
        pages_max = n_depts + -(-len(dump["users"]) // 100)
        env.sim.admin("POST", "/_sim/stats/reset")
        est = env.agent("check-config", "--online", check=0).stdout
        self.assertIn(f"estimated DingTalk calls for a full sync: about {3 + n_depts + pages_max} ", est)
        self.assertEqual({k: v["calls"] for k, v in env.sim.stats()["apis"].items() if v["calls"]},
                         {"/gettoken": 1, "/topapi/v2/department/listsub": 1, "/topapi/v2/department/get": 1,
                          "/topapi/v2/user/list": 1, "/topapi/v2/user/get": 1, "/department/list": 1,
                          "/topapi/user/count": 1})
        self.assertLessEqual(sum(want.values()), 3 + n_depts + pages_max)
        # Those seven are metered too: before, the month's count (and so the reconcile budget)
        # never saw them.
        self.assertIn("DingTalk calls of this check: 7 (counted in this month's calls)", est)
        h = env.agent("history", check=0).stdout
        m2 = re.search(r"calls this month: (\d+) \(full syncs (\d+), events 0, check-config 7\)", h)
        self.assertIsNotNone(m2, h)
        self.assertEqual(int(m2.group(1)), int(m.group(1)) + 7)
        # A count that could not be written is not reported as counted (another writer holds
        # state.db past the busy timeout).
        con = sqlite3.connect(str(env.state / "state.db"), isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            est = env.agent("check-config", "--online", check=0).stdout
        finally:
            con.close()
        self.assertIn("DingTalk calls of this check: 7 (not counted in this month's calls: ", est)

    def test_mapping_without_order_and_get_only_fields_skips_department_get(self):
        text = (agent_env.REPO / "configs" / "mapping.yaml").read_text()
        text = text.replace('  description: "{{ brief }}"\n', '  description: ""\n').replace(
            '  order: "{{ order }}"\n', '  order: 0\n')
        env = Env(generate="users=900,departments=40,depth=3,seed=12", mapping_text=text)
        self.addCleanup(env.stop)
        dump = env.sim.org()
        env.agent("sync", check=0)
        apis = {k: v["calls"] for k, v in env.sim.stats()["apis"].items()}
        self.assertEqual(apis["/topapi/v2/department/get"], 1)  # the root's name only
        self.assertEqual(apis["/topapi/v2/department/listsub"], 1)
        exp = expected_org(dump)
        for d in exp["departments"].values():
            d["description"], d["order"] = "", 0
        # Leaders (and the managers derived from them) come from the pages' leader flags.
        self.assertEqual(diff_orgs(exp, target_org(env.target_db())), [])

    def test_falls_back_to_listsub_when_the_recursive_list_disagrees(self):
        import tempfile
        org = {"departments": [{"dept_id": 1, "name": "Root"},
                               {"dept_id": 2, "name": "Hidden", "parent_id": 1, "hide_dept": True},
                               {"dept_id": 3, "name": "Open", "parent_id": 1},
                               {"dept_id": 4, "name": "Sub", "parent_id": 3}],
               "users": [{"userid": "u1", "name": "U1", "dept_id_list": [4]},
                         {"userid": "u2", "name": "U2", "dept_id_list": [1]}]}
        fixture = Path(tempfile.mkdtemp()) / "org.json"
        fixture.write_text(json.dumps(org))
        env = Env(generate=None, sim_extra=("--org", str(fixture), "--listsub-hide-hidden"))
        self.addCleanup(env.stop)
        p = env.agent("sync", check=0)
        self.assertIn("reading the tree with listsub", p.stderr)
        apis = {k: v["calls"] for k, v in env.sim.stats()["apis"].items()}
        self.assertGreater(apis["/topapi/v2/department/listsub"], 1)
        depts = target_org(env.target_db())["departments"]
        self.assertEqual(sorted(depts), ["1", "3", "4"])  # what listsub shows


if __name__ == "__main__":
    unittest.main()
