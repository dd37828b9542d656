"""dingbridge-agent end to end: the real dingtalk-sim, dingbridge-proxy and dingbridge-agent on
loopback (see agent_env.py). Each class is one ctest entry (agent_<Class>)."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_env  # noqa: E402
from agent_env import Env, expected_org, target_org, diff_orgs, expected_changes, db_rows  # noqa: E402


def max_depth(dump):
    parent = {d["dept_id"]: d.get("parent_id") for d in dump["departments"]}
    best = 0
    for d in parent:
        n, cur = 0, d
        while cur != 1 and cur in parent:
            cur = parent[cur]
            n += 1
        best = max(best, n)
    return best


class LargeOrgThroughProxy(unittest.TestCase):
    """A generated org of 5,000 users / 300 departments / depth >= 6 at the simulator's 20 QPS."""

    def test_full_sync_equals_the_simulator_org_field_by_field(self):
        # A 4 s token lifetime makes the agent refresh its token several times during the run.
        # 15/s per API plus at most 4 requests delayed across a second boundary stays <= 20 even
        # on a loaded machine, so "no throttle answer" is deterministic.
        env = Env(generate="users=5000,departments=300,depth=7,seed=11", qps=20, agent_qps=15, concurrency=4,
                  sim_extra=("--token-ttl", "4"))
        self.addCleanup(env.stop)
        dump = env.sim.org()
        self.assertGreaterEqual(len(dump["users"]), 5000)
        self.assertGreaterEqual(len(dump["departments"]), 300)
        self.assertGreaterEqual(max_depth(dump), 6)
        t0 = time.time()
        p = env.agent("sync", check=0)
        wall = time.time() - t0
        problems = diff_orgs(expected_org(dump), target_org(env.target_db()))
        self.assertEqual(problems, [], "\n".join(problems))
        stats = env.sim.stats()
        self.assertEqual(stats["throttled"], 0, f"the agent exceeded the simulator's QPS limit: {stats}")
        # The simulator allow-lists only the proxy's egress address: nothing was refused.
        self.assertEqual(stats["denied_ip"], 0)
        run = env.history()[0]
        self.assertEqual(run["status"], "succeeded")
        self.assertEqual(run["counts"]["create_user"], 5000)
        self.assertGreaterEqual(stats["apis"]["/gettoken"]["calls"], 3, "the token was not refreshed before expiry")
        print(f"\nfull sync: {wall:.1f}s wall, {stats['total_calls']} calls, peak per-API QPS "
              f"{max(a['peak_qps'] for a in stats['apis'].values())}, limit 20", file=sys.stderr)
        # Users can be queried with the sqlite3 tool too.
        if shutil.which("sqlite3"):
            out = subprocess.run(["sqlite3", str(env.target_db()), "SELECT count(*) FROM users"],
                                 capture_output=True, text=True)
            self.assertEqual(out.stdout.strip(), "5000")
        self.assertIn("Plan: ", p.stdout)


class HttpsProxy(unittest.TestCase):
    def test_sync_through_an_https_proxy_listener(self):
        env = Env(proxy_tls=True)
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        # The proxy's certificate is verified: a wrong proxy CA is a TLS failure, not a silent success.
        env.config.write_text(env.config.read_text().replace(f'  ca_file: "{env.ca}"\ntarget',
                                                             '  ca_file: "/etc/ssl/certs/ca-certificates.crt"\ntarget'))
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("TLS/CA failure", p.stdout)


class WithoutProxy(unittest.TestCase):
    def test_direct_call_fails_with_the_allow_list_error(self):
        env = Env(with_proxy=False)
        self.addCleanup(env.stop)
        p = env.agent("sync", check=1)
        text = p.stdout + p.stderr
        self.assertIn("not on the app's server egress IP allow-list", text)
        self.assertIn("127.0.0.1", text)  # the IP DingTalk saw
        self.assertIn("proxy.url", text)  # what to do
        run = env.history()[0]
        self.assertEqual(run["status"], "failed")
        self.assertIn("60020", run["message"])
        self.assertEqual(target_org(env.target_db())["users"], {})


class Mutations(unittest.TestCase):
    def test_second_sync_applies_exactly_the_mutations_and_third_applies_nothing(self):
        env = Env(generate="users=150,departments=25,depth=4,seed=5")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        before = expected_org(env.sim.org())
        self.assertEqual(diff_orgs(before, target_org(env.target_db())), [])
        org = env.sim.org()
        depts = {d["dept_id"]: d for d in org["departments"]}
        members = {}
        for u in org["users"]:
            for d in u["dept_id_list"]:
                members.setdefault(d, []).append(u["userid"])
        children = {}
        for d in org["departments"]:
            if d["dept_id"] != 1:
                children.setdefault(d["parent_id"], []).append(d["dept_id"])
        non_root = [d for d in depts if d != 1]
        # department added, sub-department added
        new = env.sim.admin("POST", "/_sim/dept/create", {"name": "新部门 New", "parent_id": 1, "order": 5})["dept_id"]
        env.sim.admin("POST", "/_sim/dept/create", {"name": "子部门", "parent_id": new, "order": 1})
        # removed: a leaf; its members move to the root first (those user updates are expected)
        leaf = next(d for d in non_root if d not in children)
        for uid in members.get(leaf, []):
            u = next(x for x in org["users"] if x["userid"] == uid)
            rest = [d for d in u["dept_id_list"] if d != leaf] or [1]
            env.sim.admin("POST", "/_sim/user/update", {"userid": uid, "dept_id_list": rest})
        env.sim.admin("POST", "/_sim/dept/remove", {"dept_id": leaf})
        # renamed, moved (under the new department)
        others = [d for d in non_root if d != leaf]
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": others[0], "name": "Renamed 改名"})
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": others[1], "parent_id": new})
        # user added, removed, renamed, moved between departments
        env.sim.admin("POST", "/_sim/user/create", {"userid": "newbie1", "name": "新人", "dept_id_list": [new],
                                                    "email": "newbie1@example.com", "mobile": "13900001111",
                                                    "state_code": "86"})
        users = [u for u in org["users"] if leaf not in u["dept_id_list"]]
        env.sim.admin("POST", "/_sim/user/remove", {"userid": users[0]["userid"]})
        env.sim.admin("POST", "/_sim/user/update", {"userid": users[1]["userid"], "name": "改名 Renamed"})
        env.sim.admin("POST", "/_sim/user/update", {"userid": users[2]["userid"], "dept_id_list": [others[2]]})

        after = expected_org(env.sim.org())
        want = expected_changes(before, after)
        env.agent("sync", check=0)
        self.assertEqual(diff_orgs(after, target_org(env.target_db())), [])
        run = env.history()[0]
        got = {k: run["counts"][k] for k in want}
        self.assertEqual(got, want)
        self.assertEqual(run["counts"]["changes_applied"], sum(want.values()))
        self.assertGreaterEqual(want["create_department"], 2)
        self.assertEqual(want["delete_department"], 1)
        self.assertEqual(want["disable_user"], 1)
        # the removed user is disabled, not gone
        con = sqlite3.connect(str(env.target_db()))
        active, removed_at = con.execute("SELECT active, removed_at FROM users WHERE external_id=?",
                                         (users[0]["userid"],)).fetchone()
        con.close()
        self.assertEqual(active, 0)
        self.assertIsNotNone(removed_at)

        env.agent("sync", check=0)
        third = env.history()[0]
        self.assertEqual(third["counts"]["changes_planned"], 0)
        self.assertEqual(third["status"], "succeeded")

    def test_history_keep_deletes_old_runs_and_settled_events(self):
        # Before: every run, its items and every journaled event stayed in state.db for good.
        env = Env(generate="users=20,departments=3,depth=1,seed=3")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        env.agent("sync", check=0)
        con = sqlite3.connect(str(env.state / "state.db"))
        con.execute("UPDATE runs SET finished_at='2000-01-01T00:00:00.000Z'")
        for key, status in (("old-done", "done"), ("old-pending", "pending")):
            con.execute("INSERT INTO event_journal(dedup_key, source, event_type, received_ms, status) "
                        "VALUES(?, 'stream', 'user_modify_org', 1000, ?)", (key, status))
        con.commit()
        con.close()
        env.agent("sync", check=0)
        # Run 1 went; run 2, the last full sync that applied before this one, stays, as does 3.
        self.assertEqual(sorted(r["id"] for r in env.history()), [2, 3])
        con = sqlite3.connect(str(env.state / "state.db"))
        keys = [k for (k,) in con.execute("SELECT dedup_key FROM event_journal")]
        # Without any full sync that applied (only failed ones here), old runs go all the same.
        con.execute("UPDATE runs SET status='failed', finished_at='2000-01-01T00:00:00.000Z'")
        con.commit()
        con.close()
        self.assertEqual(keys, ["old-pending"])  # a row still to apply is never dropped
        env.agent("sync", check=0)
        self.assertEqual([r["id"] for r in env.history()], [4])


class Faults(unittest.TestCase):
    def test_sync_converges_through_5xx_busy_throttle_slow_drop_and_token_errors(self):
        env = Env(generate="users=200,departments=30,depth=4,seed=9")
        self.addCleanup(env.stop)
        env.sim.admin("POST", "/_sim/faults", [
            {"path": "/topapi/v2/department/listsub", "kind": "5xx", "status": 503, "count": 3},
            {"path": "/topapi/v2/department/get", "kind": "busy", "count": 3},
            {"path": "/topapi/v2/user/list", "kind": "throttle", "count": 3},
            {"path": "/topapi/v2/user/list", "kind": "slow", "delay_ms": 1500, "count": 2},
            {"path": "/topapi/v2/department/get", "kind": "drop", "count": 2},
            {"path": "/topapi/v2/department/listsub", "kind": "token_invalid", "count": 1},
            {"path": "/gettoken", "kind": "5xx", "status": 502, "count": 1},
        ])
        env.agent("sync", check=0)
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        run = env.history()[0]
        self.assertEqual(run["status"], "succeeded")
        # 5xx, busy and throttle answers are always retried by the agent (a dropped connection may
        # be retried inside libcurl when it was a reused one).
        self.assertGreaterEqual(run["counts"]["retries"], 9)
        faults = env.sim.admin("GET", "/_sim/faults")
        self.assertTrue(all(f["remaining"] == 0 for f in faults), faults)

    def test_calls_failing_together_on_a_token_share_one_refetch(self):
        # Four pages in flight when DingTalk rejects their token: one new token serves them all,
        # not one /gettoken per failed call (each is a metered call).
        env = Env(generate="users=400,departments=8,depth=2,seed=5", agent_qps=1000, concurrency=4)
        self.addCleanup(env.stop)
        # The four pages in flight (concurrency 4) are refused one after another, each answer 0.2 s
        # after the one before: the later ones arrive after the first one's refetch.
        env.sim.admin("POST", "/_sim/faults", [
            {"path": "/topapi/v2/user/list", "kind": "token_invalid", "count": 1, "delay_ms": 200 * (i + 1)}
            for i in range(4)])
        env.agent("sync", check=0)
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        self.assertTrue(all(f["remaining"] == 0 for f in env.sim.admin("GET", "/_sim/faults")))
        self.assertEqual(env.sim.stats()["apis"]["/gettoken"]["calls"], 2)

    def test_malformed_page_ends_partial_and_keeps_the_target(self):
        env = Env(generate="users=120,departments=15,depth=3,seed=4")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        rows = db_rows(env.target_db())
        # A user leaves; the next read is incomplete, so that removal must not be applied.
        victim = env.sim.org()["users"][3]["userid"]
        env.sim.admin("POST", "/_sim/user/remove", {"userid": victim})
        # Malformed answers are retried (issue 8); one that stays malformed fails its department.
        env.sim.admin("POST", "/_sim/faults", {"path": "/topapi/v2/user/list", "kind": "malformed"})
        p = env.agent("sync")
        env.sim.admin("DELETE", "/_sim/faults")
        self.assertIn(p.returncode, (1, 3), p.stdout + p.stderr)
        run = env.history()[0]
        self.assertIn(run["status"], ("partial", "failed"))
        self.assertIn("incomplete", run["message"])
        detail = env.run_detail(run["id"])
        errors = [i for i in detail["items"] if i["phase"] == "fetch"]
        self.assertGreaterEqual(len(errors), 1, detail)
        self.assertIn("/topapi/v2/user/list", errors[0]["error"])
        self.assertIn("malformed", errors[0]["error"])
        self.assertIn("request id", errors[0]["error"])
        self.assertEqual(db_rows(env.target_db()), rows)
        # Once the page reads fine again the removal goes through.
        env.agent("sync", check=0)
        self.assertFalse(target_org(env.target_db())["users"].get(victim))


class KillAndRerun(unittest.TestCase):
    def test_sigkill_mid_sync_then_rerun_converges_without_duplicates(self):
        env = Env(generate="users=1500,departments=120,depth=5,seed=21", qps=20, agent_qps=18)
        self.addCleanup(env.stop)
        proc = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Kill once the fetch is well under way (progress is in the history while it runs).
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                runs = env.history()
            except Exception:
                continue
            if runs and runs[0]["counts"]["departments_fetched"] >= 30:
                break
        self.assertIsNone(proc.poll(), "the sync ended before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(target_org(env.target_db())["users"], {})
        env.agent("sync", check=0)
        runs = env.history()
        self.assertEqual(runs[1]["status"], "failed")  # the killed run, closed on the next start
        self.assertIn("stopped", runs[1]["message"])
        self.assertEqual(runs[0]["status"], "succeeded")
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])
        con = sqlite3.connect(str(env.target_db()))
        n_users, = con.execute("SELECT count(*) FROM users").fetchone()
        n_dup, = con.execute("SELECT count(*) FROM (SELECT user_external_id, department_external_id, count(*) c "
                             "FROM user_departments GROUP BY 1, 2 HAVING c > 1)").fetchone()
        con.close()
        self.assertEqual(n_users, 1500)
        self.assertEqual(n_dup, 0)


    def test_a_sync_killed_in_its_first_second_has_its_calls_counted(self):
        # The month's count of a killed run is what its history row had recorded: the calls of
        # its first second are in it too (they were not, the row's first write came at 1 s).
        env = Env(generate="users=1500,departments=120,depth=5,seed=22", qps=20, agent_qps=18)
        self.addCleanup(env.stop)
        proc = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while env.sim.stats()["total_calls"] < 4 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.45)  # two ticks (200 ms) after the first calls, inside the first second
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = env.sim.stats()["total_calls"]
        p = env.agent("history", check=0)  # closes the killed run, counting its calls
        m = re.search(r"calls this month: (\d+)", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        self.assertGreaterEqual(int(m.group(1)), 4, p.stdout)
        self.assertLessEqual(int(m.group(1)), seen)


class Safeguard(unittest.TestCase):
    def test_removal_above_max_deletes_aborts_and_force_applies(self):
        env = Env(generate="users=100,departments=10,depth=3,seed=2", max_deletes="10%")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        rows = db_rows(env.target_db())
        gone = [u["userid"] for u in env.sim.org()["users"][:20]]
        for uid in gone:
            env.sim.admin("POST", "/_sim/user/remove", {"userid": uid})
        dry = env.agent("sync", "--dry-run", check=0)
        self.assertIn("disable_user", dry.stdout)
        self.assertIn("would abort", dry.stdout)
        self.assertEqual(db_rows(env.target_db()), rows)
        p = env.agent("sync", check=4)
        self.assertIn("max_deletes", p.stdout + p.stderr)
        self.assertIn("--force", p.stdout + p.stderr)
        self.assertEqual(env.history()[0]["status"], "aborted")
        self.assertEqual(db_rows(env.target_db()), rows)
        env.agent("sync", "--force", check=0)
        run = env.history()[0]
        self.assertEqual(run["counts"]["disable_user"], 20)
        self.assertEqual(diff_orgs(expected_org(env.sim.org()), target_org(env.target_db())), [])


class Budget(unittest.TestCase):
    def test_sync_waits_when_the_monthly_budget_cannot_pay_a_full_read(self):
        # A timer-driven `sync` is the pattern that spends a month's quota in days: with
        # dingtalk.monthly_call_budget set, a sync the month's rest cannot pay reads nothing.
        env = Env(generate="users=80,departments=10,depth=3,seed=3")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        cost = env.sim.stats()["total_calls"]
        self.assertGreater(cost, 4)
        # Room for half a sync more: the next one (estimated from the last) waits.
        env.config.write_text(env.config.read_text().replace(
            "  qps:", f"  monthly_call_budget: {cost + cost // 2}\n  qps:", 1))
        env.sim.admin("POST", "/_sim/user/create", {"userid": "budget-1", "name": "B", "dept_id_list": [1]})
        p = env.agent("sync", check=5)
        self.assertIn("sync deferred", p.stderr)
        self.assertIn(f"it would cost about {cost} calls and only {cost // 2} of dingtalk.monthly_call_budget",
                      p.stderr)
        self.assertIn("--ignore-budget", p.stderr)
        self.assertEqual(env.sim.stats()["total_calls"], cost)  # not one call
        run = env.history()[0]
        self.assertEqual((run["kind"], run["status"]), ("full", "deferred"))
        self.assertIn("monthly_call_budget", run["message"])
        self.assertNotIn("budget-1", target_org(env.target_db())["users"])
        # Asked for, it reads; after that the month has nothing left and the next sync waits.
        env.agent("sync", "--ignore-budget", check=0)
        self.assertIn("budget-1", target_org(env.target_db())["users"])
        spent = env.sim.stats()["total_calls"]
        p = env.agent("sync", check=5)
        self.assertIn("the month's calls have reached", p.stderr)
        self.assertEqual(env.sim.stats()["total_calls"], spent)
        p = env.agent("history", check=0)
        self.assertIn(f"calls this month: {spent} ", p.stdout)


class Scope(unittest.TestCase):
    def test_an_include_reads_only_its_subtree_and_a_mistyped_one_fails_the_run(self):
        # Before: include_departments: [424242] (no such department) synced an empty org: exit 0,
        # and into a filled target every department and user was planned as "no longer in
        # DingTalk" (all of them removed with max_deletes 100% or --force).
        env = Env(generate="users=50,departments=5,depth=2,seed=5", max_deletes="100%")
        self.addCleanup(env.stop)
        depts = env.sim.org()["departments"]
        top = next(d["dept_id"] for d in depts if d.get("parent_id") == 1)
        base = env.mapping.read_text()
        env.mapping.write_text(base.replace("include_departments: []", f"include_departments: [{top}]"))
        env.sim.admin("POST", "/_sim/stats/reset")
        env.agent("sync", check=0)
        held = target_org(env.target_db())
        subtree = {top}
        for _ in depts:
            subtree |= {d["dept_id"] for d in depts if d.get("parent_id") in subtree}
        self.assertEqual(set(held["departments"]), {str(d) for d in subtree})
        # Only the included subtree's members and details are read (before: the whole org's).
        calls = {api: v["calls"] for api, v in env.sim.stats()["apis"].items() if v["calls"]}
        self.assertEqual(calls.get("/topapi/v2/user/list"), len(subtree), calls)
        self.assertLessEqual(calls.get("/topapi/v2/department/get", 0), len(subtree) + 1, calls)  # + the root
        self.assertLess(len(subtree), len(depts))
        env.mapping.write_text(base.replace("include_departments: []", "include_departments: [424242]"))
        p = env.agent("sync", check=None)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("sync.include_departments: department 424242 is not in DingTalk's department tree",
                      p.stdout + p.stderr)
        self.assertEqual(env.history()[0]["status"], "failed")
        self.assertEqual(target_org(env.target_db()), held)
        # Included and excluded at once: refused with file:line before any call.
        env.mapping.write_text(base.replace("include_departments: []", f"include_departments: [{top}]")
                               .replace("exclude_departments: []", f"exclude_departments: [{top}]"))
        p = env.agent("check-config", check=2)
        self.assertRegex(p.stderr, rf"mapping\.yaml:\d+:\d+: .*department {top} is in include_departments too")

    def test_what_an_exclusion_removes_says_so(self):
        # Before: a department excluded after a sync, and its members, were removed as "no longer
        # in DingTalk", which sends the operator to DingTalk instead of to the configuration.
        env = Env(generate="users=50,departments=5,depth=2,seed=5", max_deletes="100%")
        self.addCleanup(env.stop)
        org = env.sim.org()
        top = next(d["dept_id"] for d in org["departments"] if d.get("parent_id") == 1)
        only_there = [u["userid"] for u in org["users"] if u["dept_id_list"] == [top]]
        self.assertTrue(only_there)
        env.agent("sync", check=0)
        env.mapping.write_text(env.mapping.read_text().replace("exclude_departments: []",
                                                               f"exclude_departments: [{top}]"))
        p = env.agent("sync", "--dry-run", check=0)
        self.assertIn(f"{top}: outside sync.include_departments / exclude_departments (DingTalk still has it)",
                      p.stdout)
        for userid in only_there:
            self.assertIn(f"{userid}: only in departments outside sync.include_departments", p.stdout)
        self.assertNotIn("no longer in DingTalk", p.stdout)

    def test_a_user_moved_in_while_a_new_exclusion_is_read_is_kept(self):
        # What an exclusion removes is still asked about (v2/user/get): the department list is
        # read first, and a user who moves into a synced department during a long read is outside
        # by its word. (A version that trusted the list for these removals disabled the user and
        # called the run succeeded.)
        env = Env(generate="users=50,departments=5,depth=2,seed=5", max_deletes="100%")
        self.addCleanup(env.stop)
        post = lambda path, body: env.sim.admin("POST", path, body)  # noqa: E731
        top = post("/_sim/dept/create", {"name": "To exclude", "parent_id": 1})["dept_id"]
        inner = post("/_sim/dept/create", {"name": "Inner", "parent_id": top})["dept_id"]
        synced = post("/_sim/dept/create", {"name": "Synced", "parent_id": 1})["dept_id"]
        for userid in ("mover", "stay"):
            post("/_sim/user/create", {"userid": userid, "name": userid, "dept_id_list": [inner]})
        env.agent("sync", check=0)
        env.mapping.write_text(env.mapping.read_text().replace("exclude_departments: []",
                                                               f"exclude_departments: [{top}]"))
        # The first user page answers after 3 s: every page is asked for (and answered as it was)
        # before the move, the removal check after it.
        post("/_sim/faults", [{"path": "/topapi/v2/user/list", "kind": "slow", "delay_ms": 3000, "count": 1}])
        proc = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.2)
        post("/_sim/user/update", {"userid": "mover", "dept_id_list": [synced]})
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 3, out + err)  # partial: the next read decides
        self.assertIn(f"v2/user/get places it in department {synced}", out + err)
        users = target_org(env.target_db(), include_removed=True)["users"]
        self.assertTrue(users["mover"]["active"], users["mover"])
        self.assertFalse(users["stay"]["active"])
        env.agent("sync", check=0)
        self.assertEqual([m[0] for m in target_org(env.target_db())["users"]["mover"]["memberships"]], [str(synced)])


class RemovedUsers(unittest.TestCase):
    def _mapping(self, removed):
        text = (agent_env.REPO / "configs" / "mapping.yaml").read_text()
        assert text.count("\n  action: disable\n") == 1
        return text.replace("\n  action: disable\n", "\n" + removed)

    def _user(self, env, uid):
        con = sqlite3.connect(str(env.target_db()))
        try:
            return con.execute("SELECT active, removed_at FROM users WHERE external_id=?", (uid,)).fetchone()
        finally:
            con.close()

    def test_disable_then_delete_after_the_grace_period(self):
        env = Env(generate="users=30,departments=4,depth=2,seed=6",
                  mapping_text=self._mapping("  action: disable\n  delete_after: 2s\n"))
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        uid = env.sim.org()["users"][0]["userid"]
        env.sim.admin("POST", "/_sim/user/remove", {"userid": uid})
        env.agent("sync", check=0)
        self.assertEqual(self._user(env, uid)[0], 0)
        env.agent("sync", check=0)  # within the grace period: nothing
        self.assertEqual(env.history()[0]["counts"]["changes_planned"], 0)
        time.sleep(3.1)
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["counts"]["delete_user"], 1)
        self.assertIsNone(self._user(env, uid))

    def test_delete_action_and_a_user_who_comes_back(self):
        env = Env(generate="users=30,departments=4,depth=2,seed=6",
                  mapping_text=self._mapping("  action: delete\n"))
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        org = env.sim.org()
        gone = org["users"][1]
        env.sim.admin("POST", "/_sim/user/remove", {"userid": gone["userid"]})
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["counts"]["delete_user"], 1)
        self.assertIsNone(self._user(env, gone["userid"]))
        env.sim.admin("POST", "/_sim/user/create", {"userid": gone["userid"], "name": gone["name"],
                                                    "dept_id_list": gone["dept_id_list"]})
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["counts"]["create_user"], 1)
        self.assertEqual(self._user(env, gone["userid"]), (1, None))


class Doctor(unittest.TestCase):
    """check-config --online tells each failure apart, with what to do."""

    def test_online_checks(self):
        env = Env()
        self.addCleanup(env.stop)
        ok = env.agent("check-config", "--online", check=0)
        self.assertIn("token: ok", ok.stdout)
        self.assertIn("/topapi/v2/user/list: ok", ok.stdout)

        env.write_config(password_ref="wrong-password")
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("407", p.stdout)
        self.assertIn("proxy.password", p.stdout)

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
        s.close()
        env.write_config(proxy_url=f"http://127.0.0.1:{dead_port}")
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("proxy unreachable", p.stdout)

        env.write_config(extra_yaml="")
        good = env.config.read_text()
        env.config.write_text(good.replace(f"127.0.0.1:{env.sim.port}\"", f"127.0.0.1:{dead_port}\"", 1))
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("403", p.stdout)

        env.config.write_text(good.replace(f'ca_file: "{env.ca}"', 'ca_file: "/etc/ssl/certs/ca-certificates.crt"'))
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("TLS/CA failure", p.stdout)

        env.env["SIM_APP_SECRET"] = "not-the-secret"
        env.config.write_text(good)
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("wrong AppKey/AppSecret", p.stdout)
        env.env["SIM_APP_SECRET"] = agent_env.APP_SECRET

        env.write_config(with_proxy=False)
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("egress IP not on DingTalk's allow-list", p.stdout)
        self.assertIn("127.0.0.1", p.stdout)

        # The documented example configuration loads as shipped.
        example = agent_env.REPO / "configs" / "agent.yaml"
        p = subprocess.run([agent_env.AGENT_BIN, "-c", str(example), "check-config"], capture_output=True,
                           text=True, env=dict(env.env, DINGTALK_APP_SECRET="x", DINGBRIDGE_PROXY_PASSWORD="y"))
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([agent_env.AGENT_BIN, "-c", str(example), "check-config"], capture_output=True,
                           text=True, env={k: v for k, v in env.env.items() if k != "DINGTALK_APP_SECRET"})
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr, r"agent\.yaml:\d+:\d+: dingtalk\.app_secret: environment variable "
                                   r"DINGTALK_APP_SECRET is not set")

        env.config.write_text(good + "bogus_key: 1\n")
        p = env.agent("check-config", check=2)
        self.assertRegex(p.stderr, r"agent\.yaml:\d+:\d+")
        env.config.write_text(good)
        env.mapping.write_text('user:\n  title: "{{ titel }}"\n')
        p = env.agent("check-config", check=2)
        self.assertIn("mapping.yaml:2:14", p.stderr)
        self.assertIn("unknown source field 'titel'", p.stderr)


class Secrets(unittest.TestCase):
    def test_secrets_never_appear_in_logs_history_or_errors(self):
        env = Env(extra_yaml="")
        self.addCleanup(env.stop)
        outputs = []
        cfg = env.config.read_text().replace("level: info", "level: trace")
        env.config.write_text(cfg)
        outputs.append(env.agent("sync", check=0))
        outputs.append(env.agent("check-config", "--online", check=0))
        env.env["SIM_PROXY_PASSWORD"] = agent_env.PROXY_PASSWORD + "x"   # wrong: 407
        outputs.append(env.agent("sync"))
        outputs.append(env.agent("check-config", "--online"))
        env.env["SIM_PROXY_PASSWORD"] = agent_env.PROXY_PASSWORD
        env.env["SIM_APP_SECRET"] = agent_env.APP_SECRET + "x"            # wrong: 40096
        outputs.append(env.agent("sync"))
        outputs.append(env.agent("history", "--json"))
        for r in env.history():
            outputs.append(env.agent("history", "show", str(r["id"]), "--json"))
        blobs = [o.stdout + o.stderr for o in outputs]
        for f in env.state.iterdir():
            blobs.append(f.read_bytes().decode("latin-1"))
        blobs.append(env.proxy.stderr_text())
        blobs.append("\n".join(env.proxy.access_log()))
        for secret in (agent_env.APP_SECRET, agent_env.PROXY_PASSWORD):
            for b in blobs:
                self.assertNotIn(secret, b)
        self.assertTrue(any("407" in b for b in blobs))
        self.assertTrue(any("40096" in b for b in blobs))


if __name__ == "__main__":
    unittest.main()
