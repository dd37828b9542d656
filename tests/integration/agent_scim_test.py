"""dingbridge-agent with target.type: scim against a real SCIM 2.0 server (tests/scim/server.js:
scimmy + scimmy-routers on express 4, tests/integration/scim.py) started on a free loopback port
with TLS from a test CA, the DingTalk simulator and dingbridge-proxy (agent_env.py). The server's
resources are compared one by one with the simulator's org.
"""
import os
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_env import Env, APP_SECRET, PROXY_PASSWORD, expected_org  # noqa: E402
from scim import ScimServer, TOKEN, scim_state, expected_scim  # noqa: E402


def scim_block(url, ca, extra=""):
    return f"""target:
  type: scim
  scim:
    base_url: "{url}"
    token: "${{env:SCIM_TOKEN}}"
    ca_file: "{ca}"
    page_size: 100
    max_attempts: 3
    backoff_base: 50ms
    backoff_max: 2s
{extra}"""


class ScimEnv(Env):
    def __init__(self, generate, patch=True, scim_extra="", **kw):
        super().__init__(generate=generate, **kw)
        cert, key = str(self.dir / "server.pem"), str(self.dir / "server.key")
        self.scim = ScimServer(self.dir, self.ca, cert, key, patch=patch)
        self.env["SCIM_TOKEN"] = TOKEN
        self.set_target(scim_extra)

    def set_target(self, extra="", url=None, ca=None):
        text = self.config.read_text()
        start = text.index("target:\n")
        end = text.index("mapping:")
        self.config.write_text(text[:start] + scim_block(url or self.scim.url, ca or self.ca, extra) + text[end:])

    def stop(self):
        self.scim.close()
        super().stop()


def diff(env):
    """Differences between the server and the simulator's org (empty when equal)."""
    want_groups, want_users = expected_scim(expected_org(env.sim.org()))
    groups, users, active = scim_state(env.scim)
    users = {k: v for k, v in users.items() if active[k]}
    problems = []
    for kind, w, g in (("group", want_groups, groups), ("user", want_users, users)):
        for i in sorted(set(w) | set(g)):
            if w.get(i) != g.get(i):
                problems.append(f"{kind} {i}: want {w.get(i)} got {g.get(i)}")
    return problems[:10]


def counts(env):
    return env.history()[0]["counts"]


def assert_noop_resync(test, env):
    """Another sync plans nothing and makes no write on the server."""
    env.scim.reset_stats()
    env.agent("sync", check=0)
    test.assertEqual(counts(env)["changes_planned"], 0)
    test.assertEqual(env.scim.stats()["writes"], 0)


def assert_no_token_anywhere(test, env, *outputs):
    for text in outputs:
        test.assertNotIn(TOKEN, text)
    for path in env.dir.rglob("*"):
        if path.is_file() and path.name not in ("token", "store.json") and "scim" not in path.parts[-2:-1]:
            test.assertNotIn(TOKEN.encode(), path.read_bytes(), path)


class FullSync(unittest.TestCase):
    def test_full_sync_equals_the_org_resource_by_resource_and_resync_writes_nothing(self):
        # 300 users > page_size 100: the read pages through startIndex/count.
        env = ScimEnv("users=300,departments=30,depth=4,seed=11")
        try:
            p = env.agent("sync", "--dry-run", check=0)
            self.assertIn("create_user", p.stdout)
            self.assertEqual(env.scim.stats()["writes"], 0)
            p1 = env.agent("sync", check=0)
            self.assertIn("succeeded", p1.stdout)
            self.assertEqual(diff(env), [])
            self.assertEqual(len(scim_state(env.scim)[1]), len(env.sim.org()["users"]))
            env.scim.reset_stats()
            p2 = env.agent("sync", check=0)
            run = env.history()[0]
            self.assertEqual(run["status"], "succeeded")
            self.assertEqual(run["counts"]["changes_planned"], 0)
            self.assertEqual(env.scim.stats()["writes"], 0)
            assert_no_token_anywhere(self, env, p.stdout + p.stderr, p1.stdout + p1.stderr, p2.stdout + p2.stderr)
        finally:
            env.stop()

    def test_a_server_without_patch_is_written_with_put_and_converges(self):
        env = ScimEnv("users=40,departments=6,depth=2,seed=3", patch=False)
        try:
            env.agent("sync", check=0)
            self.assertEqual(diff(env), [])
            org = env.sim.org()
            u = org["users"][0]
            other = next(d["dept_id"] for d in org["departments"] if d["dept_id"] not in u["dept_id_list"])
            env.sim.admin("POST", "/_sim/user/update", {"userid": u["userid"], "title": "Chief Tester",
                                                        "dept_id_list": [other]})
            env.scim.reset_stats()
            env.agent("sync", check=0)
            by_method = env.scim.stats()["by_method"]
            self.assertNotIn("PATCH", by_method)
            self.assertGreater(by_method.get("PUT", 0), 0)
            self.assertEqual(diff(env), [])
            assert_noop_resync(self, env)
        finally:
            env.stop()


class Mutations(unittest.TestCase):
    def test_every_mutation_kind_converges_and_the_next_run_writes_nothing(self):
        env = ScimEnv("users=120,departments=20,depth=4,seed=5")
        try:
            env.agent("sync", check=0)
            org = env.sim.org()
            self.assertEqual(diff(env), [])
            depts = {d["dept_id"]: d for d in org["departments"]}
            children = {}
            for d in org["departments"]:
                if d["dept_id"] != 1:
                    children.setdefault(d["parent_id"], []).append(d["dept_id"])
            members = {}
            for u in org["users"]:
                for d in u["dept_id_list"]:
                    members.setdefault(d, []).append(u["userid"])
            # a department with children moves under another branch and is renamed
            inner = next(d for d in children if d != 1 and depts[d]["parent_id"] != 1)
            target_parent = next(d for d in children.get(1, []) if d != inner and d != depts[inner]["parent_id"]
                                 and not under(depts, d, inner))
            env.sim.admin("POST", "/_sim/dept/update", {"dept_id": inner, "parent_id": target_parent,
                                                        "name": "Moved \"renamed\" +1"})
            # a new department; a leaf department removed after its members moved out
            env.sim.admin("POST", "/_sim/dept/create", {"name": "Brand new", "parent_id": 1, "order": 3})
            leaf = next(d for d in depts if d != 1 and d not in children and d not in (inner, target_parent)
                        and not under(depts, d, inner))
            for uid in members.get(leaf, []):
                u = next(x for x in org["users"] if x["userid"] == uid)
                rest = [d for d in u["dept_id_list"] if d != leaf] or [1]
                env.sim.admin("POST", "/_sim/user/update", {"userid": uid, "dept_id_list": rest})
            env.sim.admin("POST", "/_sim/dept/remove", {"dept_id": leaf})
            # a user changes (new e-mail -> new userName); a user moves; a user leaves; a user joins
            changed = next(u for u in org["users"] if u.get("email") and not u.get("org_email"))
            env.sim.admin("POST", "/_sim/user/update", {"userid": changed["userid"], "email": "renamed.x@example.com",
                                                        "title": "Renamed"})
            mover = next(u for u in org["users"] if u["userid"] != changed["userid"] and leaf not in u["dept_id_list"])
            env.sim.admin("POST", "/_sim/user/update", {"userid": mover["userid"], "dept_id_list": [target_parent]})
            leaver = next(u for u in org["users"] if u["userid"] not in (changed["userid"], mover["userid"])
                          and leaf not in u["dept_id_list"])
            env.sim.admin("POST", "/_sim/user/remove", {"userid": leaver["userid"]})
            env.sim.admin("POST", "/_sim/user/create", {"userid": "newcomer1", "name": "New Comer",
                                                        "dept_id_list": [target_parent], "email": "newcomer@example.com"})
            # a manager change: a user becomes the leader of the mover's new department
            boss = next(u for u in org["users"] if u["userid"] not in (changed["userid"], mover["userid"],
                                                                       leaver["userid"]) and leaf not in u["dept_id_list"])
            env.sim.admin("POST", "/_sim/user/update", {"userid": boss["userid"], "dept_id_list": [target_parent],
                                                        "leader_in_dept": [{"dept_id": target_parent, "leader": True}]})
            env.agent("sync", check=0)
            c = counts(env)
            self.assertEqual(c["items_failed"], 0)
            self.assertEqual(c["disable_user"], 1)
            self.assertEqual(c["delete_department"], 1)
            self.assertEqual(c["create_department"], 1)
            self.assertEqual(diff(env), [])
            exp = expected_org(env.sim.org())
            self.assertEqual(exp["users"][mover["userid"]]["manager"], boss["userid"])
            # the leaver is disabled (active false, in no group), not deleted
            groups, users, active = scim_state(env.scim)
            self.assertIn(leaver["userid"], users)
            self.assertFalse(active[leaver["userid"]])
            self.assertFalse(any(leaver["userid"] in g[2] for g in groups.values()))
            assert_noop_resync(self, env)

            # re-join: the leaver is back with the same userid
            env.sim.admin("POST", "/_sim/user/create", {"userid": leaver["userid"], "name": leaver["name"],
                                                        "dept_id_list": [1], "email": leaver.get("email", "")})
            env.agent("sync", check=0)
            self.assertEqual(counts(env)["create_user"], 1)
            self.assertEqual(diff(env), [])
            self.assertEqual(len([u for u in env.scim.all("/Users") if u.get("externalId") == leaver["userid"]]), 1)
        finally:
            env.stop()


def under(depts, d, ancestor):
    while d and d != 1:
        if d == ancestor:
            return True
        d = depts[d]["parent_id"]
    return False


class Conflicts(unittest.TestCase):
    def test_a_409_on_one_user_is_recorded_and_the_run_goes_on(self):
        env = ScimEnv("users=30,departments=5,depth=2,seed=8")
        try:
            exp = expected_org(env.sim.org())
            victim = sorted(exp["users"])[3]
            taken = exp["users"][victim]["username"]
            # someone else's account holds the userName (in other case: the server compares case-insensitively)
            status, _ = env.scim.create_user({"userName": taken.upper(), "displayName": "Not from DingTalk"})
            self.assertEqual(status, 201)
            p = env.agent("sync")
            self.assertEqual(p.returncode, 3, p.stdout + p.stderr)  # partial
            run = env.history()[0]
            self.assertEqual(run["status"], "partial")
            self.assertEqual(run["counts"]["items_failed"], 1)
            items = env.run_detail(run["id"])["items"]
            failed = [i for i in items if i["external_id"] == victim]
            self.assertEqual(len(failed), 1, items)
            self.assertIn("409 uniqueness", failed[0]["error"])
            self.assertIn("already in use", failed[0]["error"])  # the server's own detail
            self.assertIn("clear_field", failed[0]["error"])
            _, users, _ = scim_state(env.scim)
            # clear_field: written with its DingTalk id as userName; everyone else as planned
            self.assertEqual(users[victim]["userName"], victim)
            self.assertEqual(len(users), len(exp["users"]))
            want = expected_scim(exp)[1]
            for uid in exp["users"]:
                if uid != victim:
                    self.assertEqual(users[uid], want[uid])
            # the foreign account is untouched
            foreign = [u for u in env.scim.all("/Users") if not u.get("externalId")]
            self.assertEqual([u["userName"] for u in foreign], [taken.upper()])
        finally:
            env.stop()


class Faults(unittest.TestCase):
    def test_429_500_and_slow_answers_converge_and_nothing_is_duplicated(self):
        env = ScimEnv("users=60,departments=8,depth=3,seed=4", scim_extra="    timeout: 2s\n")
        try:
            # 429 with Retry-After on two writes in a row: the change waits and is retried, the run succeeds
            env.scim.faults("429", 2, retry_after=1, skip=20, methods=["POST"])
            env.scim.reset_stats()
            p = env.agent("sync", check=0)
            self.assertIn("succeeded", p.stdout)
            self.assertEqual(env.scim.stats()["faults"], 2)  # both were served
            self.assertEqual(diff(env), [])
            # 500 on 7 user creates: more than max_attempts (3) for two users -> recorded, run partial
            for i in range(5):
                env.sim.admin("POST", "/_sim/user/create", {"userid": f"late{i}", "name": f"Late {i}",
                                                            "dept_id_list": [1], "email": f"late{i}@example.com"})
            env.scim.faults("500", 7, methods=["POST"])
            p = env.agent("sync")
            self.assertEqual(p.returncode, 3, p.stdout + p.stderr)  # partial
            run = env.history()[0]
            self.assertEqual(run["counts"]["items_failed"], 2)
            detail = env.run_detail(run["id"])["items"][0]["error"]
            self.assertIn("HTTP 500", detail)
            self.assertIn("fault switch", detail)
            env.agent("sync", check=0)
            self.assertEqual(diff(env), [])
            # slow: a create answered after the agent's 2 s timeout was applied all the same; the
            # retry looks it up by externalId first and creates nothing twice
            env.sim.admin("POST", "/_sim/user/create", {"userid": "slow1", "name": "Slow One",
                                                        "dept_id_list": [1], "email": "slow1@example.com"})
            env.sim.admin("POST", "/_sim/dept/create", {"name": "Slow dept", "parent_id": 1, "order": 9})
            env.scim.faults("slow", 2, delay_ms=3000, methods=["POST"])
            env.agent("sync")
            time.sleep(4)  # the late requests are applied now: the department's second POST made a twin
            p = env.agent("sync", check=0)
            self.assertIn("a second resource with externalId", p.stderr)
            self.assertEqual(diff(env), [])
            for endpoint in ("/Users", "/Groups"):
                ext = [r.get("externalId") for r in env.scim.all(endpoint) if r.get("externalId")]
                self.assertEqual(len(ext), len(set(ext)), endpoint)
            assert_noop_resync(self, env)
        finally:
            env.stop()

    def test_server_restart_keeps_its_store_and_the_resync_writes_nothing(self):
        env = ScimEnv("users=20,departments=4,depth=2,seed=6")
        try:
            env.agent("sync", check=0)
            env.scim.stop()
            p = env.agent("sync")
            self.assertNotEqual(p.returncode, 0)
            self.assertNotIn(TOKEN, p.stdout + p.stderr)
            env.scim.start()  # same port, same store
            assert_noop_resync(self, env)
            self.assertEqual(diff(env), [])
        finally:
            env.stop()


class Doctor(unittest.TestCase):
    def test_check_config_online_checks_the_scim_server(self):
        env = ScimEnv("users=5,departments=2,depth=1,seed=1")
        try:
            p = env.agent("check-config", "--online")
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            for line in ("scim connect: ok", "scim TLS: ok", "scim token: ok", "scim resource types: ok",
                         "scim schemas: ok"):
                self.assertIn(line, p.stdout)
            self.assertIn("PATCH supported", p.stdout)
            # a wrong token
            env.env["SCIM_TOKEN"] = "Wrong-Token-123456"
            p = env.agent("check-config", "--online")
            self.assertEqual(p.returncode, 1)
            self.assertIn("scim token: FAIL", p.stdout)
            self.assertNotIn("Wrong-Token-123456", p.stdout + p.stderr)
            env.env["SCIM_TOKEN"] = TOKEN
            # a CA that did not sign the server's certificate
            other = env.dir / "other"
            other.mkdir()
            import harness
            other_ca, _, _ = harness.make_ca_and_cert(other)
            env.set_target(ca=other_ca)
            p = env.agent("check-config", "--online")
            self.assertEqual(p.returncode, 1)
            self.assertIn("scim TLS: FAIL", p.stdout)
            # a department extension the server does not have
            env.set_target(extra='    department_schema: "urn:ietf:params:scim:schemas:extension:acme:2.0:Dept"\n')
            p = env.agent("check-config", "--online")
            self.assertEqual(p.returncode, 1)
            self.assertIn("scim schemas: FAIL", p.stdout)
            assert_no_token_anywhere(self, env, p.stdout + p.stderr)
        finally:
            env.stop()

    def test_config_errors_name_the_key(self):
        env = ScimEnv("users=5,departments=2,depth=1,seed=1")
        try:
            env.set_target(url="http://scim.example.com/v2")
            p = env.agent("check-config")
            self.assertEqual(p.returncode, 2)  # configuration error
            self.assertIn("base_url", p.stderr)
            self.assertIn("https://", p.stderr)
            env.set_target(extra="    update_method: sometimes\n")
            p = env.agent("check-config")
            self.assertEqual(p.returncode, 2)
            self.assertIn("update_method", p.stderr)
        finally:
            env.stop()


if __name__ == "__main__":
    unittest.main()
