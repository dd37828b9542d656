"""dingbridge-agent against a scripted DingTalk stand-in (Python, HTTPS on loopback) for answers
the simulator does not produce: a missing contact permission (88/60011 with requiredScopes), a
department listed under two parents, a department whose parent was never listed. The agent
connects directly (no proxy): these tests are about what the agent does with the answers."""
import json
import os
import subprocess
import sys
import unittest
import http.server
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

AGENT = os.environ.get("DINGBRIDGE_AGENT", "dingbridge-agent")
REPO = Path(__file__).resolve().parents[2]


def ok(result):
    return {"errcode": 0, "errmsg": "ok", "result": result, "request_id": "fake-req"}


class FakeDingTalk(harness.HttpsServer):
    """Answers each topapi path from `routes[path](body_dict)`; /gettoken always succeeds."""

    def __init__(self, cert, key, routes):
        routes = dict(routes)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, obj):
                data = json.dumps(obj, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/gettoken":
                    self._send({"errcode": 0, "errmsg": "ok", "access_token": "fake-token", "expires_in": 7200})
                elif url.path in routes:  # the legacy GET /department/list
                    self._send(routes[url.path](dict(parse_qsl(url.query))))
                else:
                    self._send({"errcode": 404, "errmsg": "not found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                path = urlparse(self.path).path
                self._send(routes[path](body) if path in routes else {"errcode": 22, "errmsg": "Invalid method"})

            def log_message(self, *args):
                pass

        super().__init__(Handler, cert, key)


def tree(children, parents=None):
    """Routes for a department tree {id: [child ids]}; get's parent_id from `parents` or the tree."""
    parent_of = {c: p for p, cs in children.items() for c in cs}
    parent_of.update(parents or {})

    def listsub(b):
        d = b.get("dept_id", 1)
        return ok([{"dept_id": c, "name": f"d{c}", "parent_id": d} for c in children.get(d, [])])

    def get(b):
        d = b["dept_id"]
        if d != 1 and d not in parent_of:
            return {"errcode": 60003, "errmsg": "部门不存在或已删除", "request_id": "no-dept"}
        r = {"dept_id": d, "name": f"d{d}", "order": d, "dept_manager_userid_list": []}
        if d != 1:
            r["parent_id"] = parent_of[d]
        return ok(r)

    def users(b):
        d = b["dept_id"]
        return ok({"has_more": False, "list": [{"userid": f"u{d}", "name": f"user {d}", "dept_id_list": [d]}]})

    def user_get(b):  # user u<d> is the one member of department d
        d = int(b["userid"][1:]) if b["userid"][1:].isdigit() else 0
        if d != 1 and d not in parent_of:
            return {"errcode": 60121, "errmsg": "找不到该用户", "request_id": "no-user"}
        return ok({"userid": b["userid"], "name": f"user {d}", "dept_id_list": [d]})

    return {"/topapi/v2/department/listsub": listsub, "/topapi/v2/department/get": get,
            "/topapi/v2/user/list": users, "/topapi/v2/user/get": user_get}


def legacy_list(children, omit=()):
    """GET /department/list?id=1&fetch_child=true for `children` (dingtalk-api.md §2's keys),
    leaving out the departments in `omit`, as a list clipped by DingTalk would."""
    def route(q):
        out, queue = [], list(children.get(int(q.get("id", "1")), []))
        while queue:
            d = queue.pop(0)
            parent = next(p for p, cs in children.items() if d in cs)
            if d not in omit:
                out.append({"id": d, "name": f"d{d}", "parentid": parent})
            queue.extend(children.get(d, []))
        return {"errcode": 0, "errmsg": "ok", "department": out}
    return {"/department/list": route}


class FakeDingTalkTests(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.dir = Path(self.work.path)
        self.ca, self.cert, self.key = harness.make_ca_and_cert(self.dir)
        self.fake = None

    def tearDown(self):
        if self.fake:
            self.fake.stop()
        self.work.cleanup()

    def agent(self, routes, *args):
        self.fake = FakeDingTalk(self.cert, self.key, routes)
        cfg = self.dir / "agent.yaml"
        cfg.write_text(f"""dingtalk:
  app_key: fakekey
  app_secret: "${{env:FAKE_SECRET}}"
  oapi_base_url: "https://127.0.0.1:{self.fake.port}"
  ca_file: "{self.ca}"
  max_attempts: 2
mapping: "{REPO / 'configs' / 'mapping.yaml'}"
state_dir: "{self.dir / 'state'}"
""")
        return subprocess.run([AGENT, "-c", str(cfg), *args], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, FAKE_SECRET="fake-secret-value"))

    def history(self):
        cfg = self.dir / "agent.yaml"
        p = subprocess.run([AGENT, "-c", str(cfg), "history", "--json"], capture_output=True, text=True,
                           env=dict(os.environ, FAKE_SECRET="x"))
        return json.loads(p.stdout)

    def test_check_config_online_names_the_missing_permission_scope(self):
        routes = tree({1: [2]})
        routes["/topapi/v2/user/list"] = lambda b: {
            "errcode": 88, "sub_code": "60011", "sub_msg": "没有调用该接口的权限",
            "errmsg": "ding talk error[subcode=60011,submsg=没有调用该接口的权限，接口权限申请参考"
                      "{requiredScopes=[qyapi_get_department_member]}]", "request_id": "perm-req"}
        p = self.agent(routes, "check-config", "--online")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("token: ok", p.stdout)
        self.assertIn("missing contact permission", p.stdout)
        self.assertIn("qyapi_get_department_member", p.stdout)
        self.assertIn("perm-req", p.stdout)

    def test_check_config_online_asks_user_get_about_a_listed_member(self):
        # Events about users and a full sync's removal check call v2/user/get: a missing
        # permission there must show before the first event, not at it.
        routes = tree({1: [2]})
        asked = []
        routes["/topapi/v2/user/get"] = lambda b: asked.append(b["userid"]) or {
            "errcode": 88, "sub_code": "60011", "request_id": "get-perm",
            "errmsg": "ding talk error[subcode=60011,submsg=x {requiredScopes=[qyapi_get_member]}]"}
        p = self.agent(routes, "check-config", "--online")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("/topapi/v2/user/list: ok", p.stdout)
        self.assertIn("/topapi/v2/user/get: FAIL: missing contact permission", p.stdout)
        self.assertIn("qyapi_get_member", p.stdout)
        self.assertEqual(set(asked), {"u1"})  # the member the list gave

        p = self.agent(tree({1: [2]}), "check-config", "--online")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("/topapi/v2/user/get: ok", p.stdout)

        empty = tree({1: [2]})
        empty["/topapi/v2/user/list"] = lambda b: ok({"has_more": False, "list": []})
        p = self.agent(empty, "check-config", "--online")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("/topapi/v2/user/get: not checked (department 1 has no direct member", p.stdout)

    def test_sync_stops_on_a_missing_permission(self):
        routes = tree({1: [2]})
        routes["/topapi/v2/user/list"] = lambda b: {
            "errcode": 88, "sub_code": "60011", "errmsg": "x {requiredScopes=[qyapi_get_member]}", "request_id": "r"}
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("qyapi_get_member", p.stdout + p.stderr)
        self.assertEqual(self.history()[0]["status"], "failed")

    def test_monthly_quota_stops_the_run(self):
        routes = tree({1: [2]})
        routes["/topapi/v2/department/get"] = lambda b: {"errcode": 90020, "errmsg": "调用量超限", "request_id": "q"}
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("monthly DingTalk API quota", self.history()[0]["message"])

    def test_department_listed_under_two_parents_fails_before_planning(self):
        p = self.agent(tree({1: [2, 3], 2: [4], 3: [4]}), "sync")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        run = self.history()[0]
        self.assertEqual(run["status"], "failed")
        self.assertIn("department 4 is listed twice", run["message"])
        self.assertEqual(run["counts"]["changes_applied"], 0)

    def test_parent_that_was_never_listed_fails_before_planning(self):
        p = self.agent(tree({1: [2, 3]}, parents={3: 99}), "sync")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        run = self.history()[0]
        self.assertIn("names a parent 99 that was not fetched", run["message"])
        self.assertIn("nothing was applied", run["message"])

    def test_a_consistent_tree_syncs(self):
        p = self.agent(tree({1: [2, 3], 2: [4]}), "sync")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.history()[0]["counts"]["create_department"], 4)

    def test_a_root_that_cannot_be_read_stops_the_calls(self):
        """Without the root nothing is applied: the run stops calling DingTalk once the root's
        department/get has failed, instead of reading all of the org for nothing."""
        routes = tree({1: list(range(2, 52))})
        get = routes["/topapi/v2/department/get"]
        routes["/topapi/v2/department/get"] = lambda b: (
            {"errcode": 50004, "errmsg": "部门不在授权范围内", "request_id": "scope"} if b["dept_id"] == 1 else get(b))
        calls = []

        def counted(path, route):
            return lambda b: calls.append(path) or route(b)
        routes = {path: counted(path, route) for path, route in routes.items()}
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        run = self.history()[0]
        self.assertEqual(run["status"], "failed")
        self.assertIn("root department 1 could not be read", run["message"])
        self.assertIn("errcode 50004", run["message"])
        # The first calls go out together (the root's get and first page, listsub of the root);
        # at most the 8 in flight when the failure came back follow. Reading the org: 104.
        self.assertLess(len(calls), 20, sorted(calls))

    def test_answers_missing_what_the_sync_relies_on_remove_nothing(self):
        """An answer that looks successful but is about another department, has no `list`, or has
        no `has_more` is an incomplete read, not a department that is gone or empty."""
        routes = tree({1: [2, 3], 2: [4]})
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        before = self.target()
        self.assertEqual(before, (["1", "2", "3", "4"], ["u1", "u2", "u3", "u4"]))
        get, users = routes["/topapi/v2/department/get"], routes["/topapi/v2/user/list"]
        broken = {
            # department/get about another department than the one asked for
            "/topapi/v2/department/get": lambda b: get(dict(b, dept_id=3)) if b["dept_id"] == 4 else get(b),
            # a page without its list, and one without has_more
            "/topapi/v2/user/list": lambda b: (ok({"has_more": False}) if b["dept_id"] == 2 else
                                               ok({"list": users(b)["result"]["list"]}) if b["dept_id"] == 3
                                               else users(b)),
        }
        routes.update(broken)
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(self.target(), before)
        run = self.history()[0]
        self.assertEqual(run["status"], "partial")
        self.assertEqual(run["counts"]["changes_applied"], 0)
        self.assertIn("not the department 4 asked for", p.stdout + p.stderr + json.dumps(self.history()))

    def target(self):
        """(department ids, active user ids) in the SQLite target."""
        import sqlite3
        con = sqlite3.connect(str(self.dir / "state" / "org.db"))
        try:
            return (sorted(r[0] for r in con.execute("SELECT external_id FROM departments")),
                    sorted(r[0] for r in con.execute("SELECT external_id FROM users WHERE active = 1")))
        finally:
            con.close()

    def test_a_department_the_one_call_list_leaves_out_is_not_deleted(self):
        """The recursive /department/list is checked against listsub for the root's children only.
        A deeper department it leaves out, which DingTalk still has, is re-read the trusted way
        (listsub) instead of being deleted, or its members disabled; what is really gone costs
        one department/get or v2/user/get each to confirm, and is removed."""
        children = {1: [2, 3], 2: [4]}
        calls = []

        def counted(routes):
            return {path: (lambda path, route: lambda b: calls.append((path, b.get("dept_id"))) or route(b))(
                path, route) for path, route in routes.items()}

        def count(path, dept=None):
            return sum(1 for p, d in calls if p == path and (dept is None or d == dept))
        routes = counted({**tree(children), **legacy_list(children)})
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(count("/topapi/v2/department/listsub"), 1, calls)  # the list was used
        full = (["1", "2", "3", "4"], ["u1", "u2", "u3", "u4"])
        self.assertEqual(self.target(), full)

        # The list leaves 4 out; listsub and department/get still have it.
        calls.clear()
        # --force: this small org's deletion safeguard would stop any removal and hide the point.
        routes = counted({**tree(children), **legacy_list(children, omit={4})})
        p = self.agent(routes, "sync", "--force")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.target(), full)
        self.assertIn("/department/list left out department 4", p.stdout + p.stderr)
        self.assertEqual(count("/topapi/v2/department/listsub", 4), 1, calls)  # re-read by listsub
        run = self.history()[0]
        self.assertEqual(run["counts"]["delete_department"], 0)
        self.assertEqual(run["counts"]["disable_user"], 0)

        # A new department 5 (under 4) that the list leaves out: its member u5 is not in the
        # target yet, but u4 moved there is (its department 4 becomes empty of u4 here by
        # listing u5's department as 5 only). No department is deleted; the user would be
        # disabled, so v2/user/get is asked, places u4 in 5, and the tree is read again.
        calls.clear()
        grown = {1: [2, 3], 2: [4], 4: [5]}
        routes = {**tree(grown), **legacy_list(grown, omit={5})}
        users = routes["/topapi/v2/user/list"]
        user_get = routes["/topapi/v2/user/get"]
        moved = {"u4": 5}  # u4 is now in department 5 only; department 4 lists nobody

        def pages(b):
            if b["dept_id"] == 4:
                return ok({"has_more": False, "list": []})
            if b["dept_id"] == 5:
                return ok({"has_more": False, "list": [{"userid": "u4", "name": "user 4", "dept_id_list": [5]}]})
            return users(b)
        routes["/topapi/v2/user/list"] = pages
        routes["/topapi/v2/user/get"] = lambda b: (ok({"userid": b["userid"], "name": "user 4", "dept_id_list": [5]})
                                                   if b["userid"] in moved else user_get(b))
        p = self.agent(counted(routes), "sync", "--force")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("/department/list left out department 5", p.stdout + p.stderr)
        self.assertEqual(self.target(), (["1", "2", "3", "4", "5"], ["u1", "u2", "u3", "u4"]))
        self.assertEqual(count("/topapi/v2/user/get"), 1, calls)
        self.assertEqual(count("/topapi/v2/department/listsub", 5), 1, calls)

        # Really gone: every read agrees, and department/get answers 60003.
        calls.clear()
        gone = {1: [2, 3]}
        routes = {**tree(gone), **legacy_list(gone)}  # department/get: 60003 for 4 and 5
        p = self.agent(counted(routes), "sync", "--force")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.target(), (["1", "2", "3"], ["u1", "u2", "u3"]))
        # u4 is gone too: v2/user/get answered 60121, once.
        self.assertEqual(count("/topapi/v2/user/get"), 1, calls)
        # The list was trusted (one listsub, the root's); the deletion cost one department/get.
        self.assertEqual(count("/topapi/v2/department/listsub"), 1, calls)
        self.assertEqual(count("/topapi/v2/department/get", 4), 1, calls)
        self.assertEqual(count("/department/list"), 1, calls)


    def test_a_removal_that_cannot_be_confirmed_holds_back_only_itself(self):
        """u3 left (60121) while department 4, left out of the list, cannot be asked about (busy
        every time): 4 and its member stay, u3 is disabled all the same, and the run is partial.
        A department outside the app's contact scope (50004) counts as outside the sync."""
        children = {1: [2, 3], 2: [4, 5]}
        p = self.agent({**tree(children), **legacy_list(children)}, "sync")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        shrunk = {1: [2, 3], 2: [4]}
        routes = {**tree(shrunk), **legacy_list(shrunk, omit={4})}
        get, user_get = routes["/topapi/v2/department/get"], routes["/topapi/v2/user/get"]
        routes["/topapi/v2/department/get"] = lambda b: (
            {"errcode": -1, "errmsg": "系统繁忙", "request_id": "busy"} if b["dept_id"] == 4 else
            {"errcode": 50004, "errmsg": "部门不在授权范围内", "request_id": "scope"} if b["dept_id"] == 5 else get(b))
        routes["/topapi/v2/user/get"] = lambda b: (
            {"errcode": -1, "errmsg": "系统繁忙", "request_id": "busy"} if b["userid"] == "u4" else
            {"errcode": 60121, "errmsg": "找不到该用户", "request_id": "left"} if b["userid"] == "u3" else user_get(b))
        users = routes["/topapi/v2/user/list"]
        routes["/topapi/v2/user/list"] = lambda b: ok({"has_more": False, "list": []}) if b["dept_id"] == 3 else users(b)
        p = self.agent(routes, "sync", "--force")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        # 5 (outside the app's scope) and u5 went, u3 (gone) went; 4 and u4 (unknown) stayed.
        self.assertEqual(self.target(), (["1", "2", "3", "4"], ["u1", "u2", "u4"]))
        run = self.history()[0]
        self.assertEqual(run["status"], "partial")
        self.assertIn("could not confirm 2 of the removals", run["message"])

    def test_a_user_dingtalk_places_in_a_synced_department_its_pages_left_out_is_kept(self):
        """Department 3's member page leaves u3 out (a page DingTalk clipped, or a move while the
        pages were read) while v2/user/get places u3 in department 3. Before: the page decided and
        u3 was disabled, the run "succeeded". Now u3 is kept and the run is partial."""
        children = {1: [2, 3]}
        p = self.agent({**tree(children), **legacy_list(children)}, "sync")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        routes = {**tree(children), **legacy_list(children)}
        users = routes["/topapi/v2/user/list"]
        routes["/topapi/v2/user/list"] = lambda b: ok({"has_more": False, "list": []}) if b["dept_id"] == 3 else users(b)
        p = self.agent(routes, "sync")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(self.target(), (["1", "2", "3"], ["u1", "u2", "u3"]))
        run = self.history()[0]
        self.assertEqual(run["status"], "partial")
        self.assertIn("could not confirm 1 of the removals", run["message"])


if __name__ == "__main__":
    unittest.main()
