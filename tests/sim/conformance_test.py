#!/usr/bin/env python3
"""Conformance tests for dingtalk-sim: drive the real binary over real HTTPS (and WebSocket)
on loopback, with certificates made by a throw-away test CA. Stdlib only (+ the openssl CLI and
tests/integration/harness.py).

Usage: DINGTALK_SIM=/path/to/dingtalk-sim conformance_test.py GROUP
Groups: tokens directory users allowlist throttle faults mutations stream push
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402  (certificates, processes: the integration tests' helpers)

SIM = os.environ.get("DINGTALK_SIM", "dingtalk-sim")
APP_KEY, APP_SECRET, CORP_ID = "dingtestkey", "testsecret", "dingtestcorp"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


class Certs:
    """A test CA and a server certificate for localhost/127.0.0.1, in a temp dir."""

    def __init__(self, d):
        self.dir = d
        self.ca, self.cert, self.key = harness.make_ca_and_cert(d, names=("localhost",), ips=("127.0.0.1",))
        self.ctx = ssl.create_default_context(cafile=self.ca)


class Sim:
    """One dingtalk-sim process on 127.0.0.1:0."""

    def __init__(self, tmp, certs, *extra, generate="users=300,departments=30,depth=3,seed=5"):
        self.tmp, self.certs = tmp, certs
        fd, self.port_file = tempfile.mkstemp(dir=tmp, prefix="port")
        os.close(fd)
        os.unlink(self.port_file)
        args = [SIM, "--listen", "127.0.0.1:0", "--port-file", self.port_file, "--cert", certs.cert, "--key", certs.key,
                "--app-key", APP_KEY, "--app-secret", APP_SECRET, "--corp-id", CORP_ID, "--log-level", "warn"]
        if generate and "--org" not in extra:
            args += ["--generate", generate]
        args += list(extra)
        self.log = open(os.path.join(tmp, f"sim-{os.path.basename(self.port_file)}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        harness.wait_until(lambda: os.path.exists(self.port_file), self.proc, "dingtalk-sim", 20,
                           lambda: f"see {self.log.name}")
        self.port = int(open(self.port_file).read())
        self.conns = {}

    def stop(self):
        """SIGTERM must end the simulator cleanly (exit 0, no sanitizer report)."""
        for c in self.conns.values():
            c.close()
        if not harness.stop_process(self.proc, timeout=20):
            raise AssertionError("dingtalk-sim ignored SIGTERM")
        self.log.close()
        log = open(self.log.name, errors="replace").read()
        check("Sanitizer" not in log and "runtime error:" not in log, f"sanitizer report:\n{log[-4000:]}")
        eq(self.proc.returncode, 0, f"exit status after SIGTERM (log: {log[-2000:]})")

    def conn(self, source="127.0.0.1", fresh=False):
        if fresh or source not in self.conns:
            self.conns[source] = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.certs.ctx,
                                                             source_address=(source, 0), timeout=15)
        return self.conns[source]

    def request(self, method, path, body=None, headers=None, source="127.0.0.1", raw=False):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
            h.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            c = self.conn(source, fresh=attempt > 0)
            try:
                c.request(method, path, body=data, headers=h)
                r = c.getresponse()
                payload = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt:
                    raise
        if raw:
            return r.status, payload, r
        return r.status, (json.loads(payload) if payload else None)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else {}, **kw)

    def token(self, source="127.0.0.1"):
        st, b = self.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}", source=source)
        eq(b["errcode"], 0, f"gettoken {b}")
        return b["access_token"]

    def top(self, api, body, token, source="127.0.0.1"):
        st, b = self.post(f"/topapi/{api}?access_token={token}", body, source=source)
        eq(st, 200, f"topapi {api} HTTP status")
        return b

    def admin(self, path, body=None, method=None):
        st, b = self.request(method or ("POST" if body is not None else "GET"), "/_sim/" + path, body)
        return st, b


# ---------------------------------------------------------------------------------------------

def test_tokens(tmp, certs):
    sim = Sim(tmp, certs, "--token-ttl", "7200")
    st, b = sim.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}")
    eq(st, 200, "gettoken status")
    eq(set(b), {"errcode", "errmsg", "access_token", "expires_in"}, "gettoken keys")
    check(isinstance(b["access_token"], str) and b["access_token"], "access_token is a string")
    check(7100 <= b["expires_in"] <= 7200, f"expires_in {b['expires_in']}")
    t1 = b["access_token"]
    eq(sim.token(), t1, "repeat fetch returns the same token")
    st, b = sim.get(f"/gettoken?corpid={APP_KEY}&corpsecret={APP_SECRET}")
    eq(b["access_token"], t1, "corpid/corpsecret spelling")
    st, b = sim.get(f"/gettoken?appkey={APP_KEY}&appsecret=wrong")
    eq((st, b["errcode"]), (200, 40096), "bad secret")
    st, b = sim.get("/gettoken")
    eq(b["errcode"], 40035, "missing appkey")
    # New host.
    st, b = sim.post("/v1.0/oauth2/accessToken", {"appKey": APP_KEY, "appSecret": APP_SECRET})
    eq(st, 200, "accessToken status")
    eq(set(b), {"accessToken", "expireIn"}, "accessToken keys")
    eq(b["accessToken"], t1, "same token on both hosts")
    st, b = sim.post("/v1.0/oauth2/accessToken", {"appKey": APP_KEY, "appSecret": "nope"})
    eq((st, b["code"]), (400, "invalidClientIdOrSecret"), "bad creds on new host")
    check("requestid" in b and "message" in b, "api error envelope")
    st, b = sim.request("POST", "/v1.0/oauth2/accessToken", f"appKey={APP_KEY}&appSecret={APP_SECRET}",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    eq(st, 400, "form body rejected")
    # Token errors.
    b = sim.top("v2/user/get", {"userid": "x"}, "")
    eq((b["errcode"], b.get("sub_code")), (88, "40000"), "blank token")
    b = sim.top("v2/user/get", {"userid": "x"}, "bogus")
    eq((b["errcode"], b["sub_code"]), (88, "40014"), "invalid token")
    check("subcode=40014" in b["errmsg"] and b["request_id"], "errmsg format")
    st, b = sim.post(f"/topapi/v2/user/get", {"userid": "x"}, headers={"x-acs-dingtalk-access-token": t1})
    eq(b.get("sub_code"), "40000", "oapi ignores the acs header")
    st, b = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00Z&access_token=" + t1)
    eq((st, b["code"]), (400, "AuthenticationFailed.MissingParameter"), "query token on api host")
    st, b = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00Z",
                    headers={"x-acs-dingtalk-access-token": "bogus"})
    eq((st, b["code"]), (400, "InvalidAuthentication"), "invalid token on api host")
    # Forced expiry: old token fails, a new fetch gives a new token.
    eq(sim.admin("tokens/expire", {})[0], 200, "expire")
    b = sim.top("v2/department/get", {"dept_id": 1}, t1)
    eq(b.get("sub_code"), "40014", "expired token")
    t2 = sim.token()
    check(t2 != t1, "new token after expiry")
    eq(sim.top("v2/department/get", {"dept_id": 1}, t2)["errcode"], 0, "new token works")
    sim.stop()
    # Real TTL expiry, and the bare-40014 variant (§9).
    sim = Sim(tmp, certs, "--token-ttl", "2", "--plain-token-errors")
    t = sim.token()
    st, b = sim.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}")
    check(b["expires_in"] <= 2, "short ttl reported")
    eq(sim.top("v2/department/get", {"dept_id": 1}, t)["errcode"], 0, "fresh token")
    time.sleep(3.1)
    b = sim.top("v2/department/get", {"dept_id": 1}, t)
    eq((b["errcode"], "sub_code" in b), (40014, False), "ttl expiry with plain errors")
    check(sim.token() != t, "new token after ttl")
    sim.stop()


def walk_departments(sim, tok):
    seen, queue = {}, [1]
    while queue:
        d = queue.pop(0)
        b = sim.top("v2/department/listsub", {"dept_id": d}, tok)
        eq(b["errcode"], 0, f"listsub {d}")
        for item in b["result"]:
            seen[item["dept_id"]] = item
            queue.append(item["dept_id"])
    return seen


def test_directory(tmp, certs):
    sim = Sim(tmp, certs, "--qps", "0", generate="users=200,departments=60,depth=4,seed=11")
    tok = sim.token()
    dump = sim.admin("org")[1]
    depts = {d["dept_id"]: d for d in dump["departments"]}
    b = sim.top("v2/department/listsub", {"dept_id": 1, "language": "zh_CN"}, tok)
    eq(b["errcode"], 0, "listsub ok")
    check(b["request_id"], "request_id on success")
    item = b["result"][0]
    for k, t in [("dept_id", int), ("name", str), ("parent_id", int), ("create_dept_group", bool),
                 ("auto_add_user", bool), ("from_union_org", bool)]:
        check(isinstance(item[k], t), f"listsub item {k} type")
    check("order" not in item, "listsub has no order (§2)")
    b2 = sim.top("v2/department/listsub", {}, tok)
    eq(b2["result"], b["result"], "listsub defaults to root")
    b = sim.top("v2/department/listsubid", {"dept_id": 1}, tok)
    eq(b["result"]["dept_id_list"], [x["dept_id"] for x in b2["result"]], "listsubid = listsub ids")
    seen = walk_departments(sim, tok)
    eq(set(seen) | {1}, set(depts), "BFS over listsub reaches every department")
    check(any(d["hide_dept"] for d in depts.values()), "generator makes hidden departments")
    check(max(seen) > 2**31, "dept ids beyond int32")
    deep = max(seen, key=lambda d: len(sim.top("v2/department/listparentbydept", {"dept_id": d}, tok)["result"]["parent_id_list"]))
    b = sim.top("v2/department/get", {"dept_id": deep}, tok)
    r = b["result"]
    for k, t in [("dept_id", int), ("name", str), ("parent_id", int), ("order", int), ("hide_dept", bool),
                 ("dept_manager_userid_list", list), ("user_permits", list), ("dept_permits", list),
                 ("outer_dept", bool), ("create_dept_group", bool), ("auto_add_user", bool),
                 ("auto_approve_apply", bool), ("group_contain_sub_dept", bool), ("from_union_org", bool)]:
        check(isinstance(r[k], t), f"department/get {k} type")
    chain = sim.top("v2/department/listparentbydept", {"dept_id": deep}, tok)["result"]["parent_id_list"]
    eq(chain[0], deep, "chain starts with self")
    eq(chain[-1], 1, "chain ends at root")
    check(len(chain) >= 3, "depth reached")
    for a, p in zip(chain, chain[1:]):
        eq(depts[a]["parent_id"], p, "chain follows parent_id")
    st, b = sim.get(f"/department/list?access_token={tok}&id=1&fetch_child=true&lang=zh_CN")
    eq((b["errcode"], {d["id"] for d in b["department"]}), (0, set(depts) - {1}), "legacy recursive list")
    eq(set(b["department"][0]), {"id", "name", "parentid", "createDeptGroup", "autoAddUser"}, "legacy keys")
    st, b = sim.get(f"/department/list?access_token={tok}&id=1")
    eq(len(b["department"]), len(seen_root := sim.top("v2/department/listsubid", {}, tok)["result"]["dept_id_list"]),
       "legacy list without fetch_child is one level")
    eq(sim.get("/department/list?access_token=bogus")[1]["errcode"], 40014, "legacy endpoints use bare 40014")
    root = sim.top("v2/department/get", {"dept_id": 1}, tok)["result"]
    check("parent_id" not in root, "root parent_id absent by default (§9)")
    eq(sim.top("v2/department/get", {"dept_id": 999}, tok)["errcode"], 60003, "unknown dept")
    eq(sim.top("v2/department/listsub", {"dept_id": 999}, tok)["errcode"], 60003, "unknown dept listsub")
    eq(sim.top("v2/department/get", {}, tok)["errcode"], 40035, "missing dept_id")
    eq(sim.top("v2/department/get", {"dept_id": "abc"}, tok)["errcode"], 40035, "bad dept_id")
    multi = next(u for u in dump["users"] if len(u["dept_id_list"]) > 1)
    b = sim.top("v2/department/listparentbyuser", {"userid": multi["userid"]}, tok)
    pl = b["result"]["parent_list"]
    eq(len(pl), len(multi["dept_id_list"]), "one parent list per dept")
    eq([p["parent_dept_id_list"][0] for p in pl], multi["dept_id_list"], "each list starts at the dept")
    eq(sim.top("v2/department/listparentbyuser", {"userid": "ghost"}, tok)["errcode"], 60121, "unknown user")
    # Unknown paths and methods answer as DingTalk does.
    b = sim.top("v2/user/notexist", {}, tok)
    eq(b["errcode"], 22, "unknown topapi method")
    check("dingtalk.oapi.v2.user.notexist" in b["sub_msg"], "ApiName in sub_msg")
    st, b = sim.get("/nothing/here")
    eq((st, b["errcode"]), (200, 404), "unknown oapi URL")
    st, b = sim.get("/v1.0/contact/nothing", headers={"x-acs-dingtalk-access-token": tok})
    eq((st, b["code"]), (404, "InvalidAction.NotFound"), "unknown api path")
    st, b = sim.get(f"/topapi/v2/department/get?access_token={tok}")
    eq(b["errcode"], 43002, "GET on topapi")
    # Form body and form-body token (§1).
    st, b = sim.request("POST", "/topapi/v2/department/get", f"access_token={tok}&dept_id=1",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    eq(b["errcode"], 0, "form body with token")
    sim.stop()
    # Variants of §9 choices.
    sim = Sim(tmp, certs, "--qps", "0", "--listsub-hide-hidden", "--root-parent-zero", generate="users=10,departments=60,depth=2,seed=11")
    tok = sim.token()
    eq(sim.top("v2/department/get", {"dept_id": 1}, tok)["result"]["parent_id"], 0, "--root-parent-zero")
    seen = walk_departments(sim, tok)
    check(not any(sim.top("v2/department/get", {"dept_id": d}, tok)["result"]["hide_dept"] for d in seen),
          "--listsub-hide-hidden omits hidden departments")
    sim.stop()


def list_all(sim, tok, dept, size=100, **extra):
    users, cursor, pages = [], 0, 0
    while True:
        b = sim.top("v2/user/list", {"dept_id": dept, "cursor": cursor, "size": size, **extra}, tok)
        eq(b["errcode"], 0, f"user/list {dept} {b}")
        r = b["result"]
        users += r["list"]
        pages += 1
        check(len(r["list"]) <= size, "page within size")
        if not r["has_more"]:
            check("next_cursor" not in r, "no next_cursor on the last page")
            return users, pages
        check(isinstance(r["next_cursor"], int), "next_cursor is an int")
        cursor = r["next_cursor"]


def test_users(tmp, certs):
    sim = Sim(tmp, certs, "--qps", "0", generate="users=1500,departments=12,depth=2,seed=3")
    tok = sim.token()
    dump = sim.admin("org")[1]
    by_id = {u["userid"]: u for u in dump["users"]}
    dept_ids = [d["dept_id"] for d in dump["departments"]]
    merged, max_pages = {}, 0
    for d in dept_ids:
        users, pages = list_all(sim, tok, d, contain_access_limit=True)
        max_pages = max(max_pages, pages)
        eq(len({u["userid"] for u in users}), len(users), f"no duplicates within dept {d}")
        for u in users:
            src = by_id[u["userid"]]
            order = {x["dept_id"]: x["order"] for x in src["dept_order_list"]}[d]
            leader = {x["dept_id"]: x["leader"] for x in src["leader_in_dept"]}[d]
            eq((u["dept_order"], u["leader"]), (order, leader), "dept_order/leader refer to the queried dept")
            check("dept_order_list" not in u and "manager_userid" not in u, "list items lack get-only fields")
            merged.setdefault(u["userid"], u)
    eq(set(merged), set(by_id), "full walk with contain_access_limit sees every user")
    check(max_pages > 1, "paging exercised")
    limited = {u["userid"] for u in dump["users"] if u["access_limited"]}
    check(limited, "generator makes access-limited users")
    visible = set()
    for d in dept_ids:
        visible |= {u["userid"] for u in list_all(sim, tok, d)[0]}
    eq(visible, set(by_id) - limited, "without contain_access_limit, restricted users are omitted")
    check(any(len(u["dept_id_list"]) > 1 for u in merged.values()), "multi-department users")
    check(any(ord(c) > 0xFFFF for u in merged.values() for c in u["name"]), "emoji names")
    check(any("email" not in u for u in merged.values()), "missing optional fields")
    item = next(iter(merged.values()))
    for k, t in [("userid", str), ("name", str), ("dept_id_list", list), ("dept_order", int), ("leader", bool),
                 ("active", bool), ("admin", bool), ("boss", bool), ("hide_mobile", bool), ("exclusive_account", bool)]:
        check(isinstance(item[k], t), f"list item {k} type")
    # Paging limits (40035).
    for bad in [{"size": 0}, {"size": 101}, {"size": "x"}, {"cursor": -1}]:
        body = {"dept_id": 1, "cursor": 0, "size": 10, **bad}
        eq(sim.top("v2/user/list", body, tok)["errcode"], 40035, f"invalid {bad}")
    for missing in ["dept_id", "cursor", "size"]:
        body = {"dept_id": 1, "cursor": 0, "size": 10}
        del body[missing]
        b = sim.top("v2/user/list", body, tok)
        eq(b["errcode"], 40035, f"missing {missing}")
    eq(sim.top("v2/user/list", {"dept_id": 1, "cursor": 0, "size": 10, "order_field": "nope"}, tok)["errcode"], 40035, "order_field")
    eq(sim.top("v2/user/list", {"dept_id": 7, "cursor": 0, "size": 10}, tok)["errcode"], 60003, "unknown dept")
    big = max(dept_ids, key=lambda d: len(list_all(sim, tok, d)[0]))
    asc = list_all(sim, tok, big, order_field="entry_asc", contain_access_limit=True)[0]
    dates = [u.get("hired_date", 0) for u in asc]
    eq(dates, sorted(dates), "entry_asc orders by hired_date")
    b = sim.top("v2/user/list", {"dept_id": big, "cursor": 10**6, "size": 10}, tok)
    eq((b["result"]["has_more"], b["result"]["list"]), (False, []), "cursor past the end")
    # user/get.
    multi = next(u for u in dump["users"] if len(u["dept_id_list"]) > 1 and u.get("manager_userid"))
    r = sim.top("v2/user/get", {"userid": multi["userid"], "language": "zh_CN"}, tok)["result"]
    for k in ["dept_order_list", "leader_in_dept", "role_list", "dept_position_list", "manager_userid", "senior", "real_authed"]:
        check(k in r, f"user/get has {k}")
    check("dept_order" not in r and "leader" not in r, "user/get lacks list-only fields")
    eq([x["dept_id"] for x in r["dept_order_list"]], multi["dept_id_list"], "dept_order_list")
    b = sim.top("v2/user/get", {"userid": "ghost"}, tok)
    eq((b["errcode"], "sub_code" in b), (60121, False), "unknown user is a plain 60121")
    eq(sim.top("v2/user/get", {}, tok)["errcode"], 40035, "missing userid")
    # listid, listsimple, count.
    ids = sim.top("user/listid", {"dept_id": big}, tok)["result"]["userid_list"]
    eq(set(ids), {u["userid"] for u in list_all(sim, tok, big, contain_access_limit=True)[0]}, "listid")
    b = sim.top("user/listsimple", {"dept_id": big, "cursor": 0, "size": 5}, tok)
    eq(set(b["result"]["list"][0]), {"userid", "name"}, "listsimple item")
    eq(sim.top("user/count", {"only_active": False}, tok)["result"]["count"], 1500, "count")
    active = sum(1 for u in dump["users"] if u["active"])
    eq(sim.top("user/count", {"only_active": True}, tok)["result"]["count"], active, "count only_active")
    # empLeaveRecords paging.
    hdr = {"x-acs-dingtalk-access-token": tok}
    records, token_ = [], "0"
    while True:
        st, b = sim.get(f"/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00:00Z&endTime=2030-01-01T00:00:00Z"
                        f"&nextToken={token_}&maxResults=4", headers=hdr)
        eq(st, 200, f"empLeaveRecords {b}")
        records += b["records"]
        if not b.get("nextToken"):
            break
        token_ = b["nextToken"]
    eq(len(records), len(dump["leave_records"]), "all leave records")
    eq(set(records[0]), {"userId", "name", "stateCode", "mobile", "leaveTime", "leaveReason"}, "record keys")
    check(all(r["leaveReason"] in {"oapi", "cancel", "leave", "unknown", "delete"} for r in records), "reasons")
    st, b = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00Z&maxResults=51", headers=hdr)
    eq(st, 400, "maxResults above 50")
    st, b = sim.get("/v1.0/contact/empLeaveRecords?maxResults=5", headers=hdr)
    eq(st, 400, "startTime required")
    sim.stop()


def test_allowlist(tmp, certs):
    sim = Sim(tmp, certs, "--allow-source", "127.0.0.2")
    tok = sim.token(source="127.0.0.2")
    eq(sim.top("v2/department/get", {"dept_id": 1}, tok, source="127.0.0.2")["errcode"], 0, "allowed source")
    st, b = sim.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}", source="127.0.0.1")
    eq(b["errcode"], 60020, "gettoken from a denied source")
    b = sim.top("v2/department/get", {"dept_id": 1}, tok, source="127.0.0.1")
    eq((b["errcode"], b["sub_code"]), (88, "60020"), "topapi from a denied source")
    check("request ip=127.0.0.1" in b["errmsg"] and "request ip=127.0.0.1" in b["sub_msg"], "request ip named")
    st, b = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00Z",
                    headers={"x-acs-dingtalk-access-token": tok}, source="127.0.0.1")
    eq((st, b["code"]), (403, "Forbidden.AccessDenied.IpNotInWhiteList"), "api host from a denied source")
    st, b = sim.post("/v1.0/oauth2/accessToken", {"appKey": APP_KEY, "appSecret": APP_SECRET}, source="127.0.0.1")
    eq(st, 403, "accessToken from a denied source")
    eq(sim.admin("health")[0], 200, "admin is not subject to the allow-list")
    eq(sim.admin("stats")[1]["denied_ip"], 4, "denials counted")
    sim.stop()


def test_throttle(tmp, certs):
    sim = Sim(tmp, certs, "--qps", "5")
    tok = sim.token()
    start = time.time()
    codes = [sim.top("v2/department/get", {"dept_id": 1}, tok) for _ in range(30)]
    elapsed = time.time() - start
    ok = sum(1 for b in codes if b["errcode"] == 0)
    throttled = [b for b in codes if b["errcode"] == 88]
    check(throttled, "some calls throttled")
    eq(throttled[0]["sub_code"], "90018", "throttle sub_code")
    check("dingtalk.oapi.v2.department.get" in throttled[0]["errmsg"], "throttle names the API")
    check(ok <= 5 * (int(elapsed) + 2), f"admitted {ok} calls in {elapsed:.2f}s at 5 qps")
    eq(ok + len(throttled), 30, "every call answered")
    # Another API has its own budget.
    eq(sim.top("v2/department/listsubid", {"dept_id": 1}, tok)["errcode"], 0, "per-API budget")
    st, stats = sim.admin("stats")
    api = stats["apis"]["/topapi/v2/department/get"]
    eq((api["calls"], api["throttled"]), (30, len(throttled)), "stats per API")
    check(api["peak_qps"] >= 6 and stats["peak_qps"] >= 6, "peak qps observed")
    eq(stats["throttled"], len(throttled), "total throttled")
    time.sleep(1.1)
    eq(sim.top("v2/department/get", {"dept_id": 1}, tok)["errcode"], 0, "budget refills next second")
    sim.stop()
    # Per-source window: the 11th call in the window gets the deny page and a ban.
    sim = Sim(tmp, certs, "--qps", "0", "--source-limit", "10", "--source-window", "60", "--source-ban", "60")
    tok = sim.token()
    for _ in range(9):
        eq(sim.top("v2/department/get", {"dept_id": 1}, tok)["errcode"], 0, "under the source limit")
    b = sim.top("v2/department/get", {"dept_id": 1}, tok)
    eq((b.get("punish"), b.get("status")), ("deny", 1111), "deny page")
    check("errcode" not in b, "deny page is not the oapi envelope")
    b = sim.top("v2/department/get", {"dept_id": 1}, tok, source="127.0.0.2")
    eq(b["errcode"], 0, "other sources unaffected")
    sim.stop()


def test_faults(tmp, certs):
    sim = Sim(tmp, certs, "--qps", "0")
    tok = sim.token()
    get = lambda: sim.top("v2/department/get", {"dept_id": 1}, tok)
    st, b = sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "busy", "count": 1})
    eq(st, 200, f"install fault {b}")
    busy = get()
    eq(busy["errcode"], -1, "busy")
    check(busy.get("request_id"), "a topapi error carries a request_id")
    eq(get()["errcode"], 0, "count consumed")
    sim.admin("faults", [{"path": "/topapi/*/get", "kind": "http_status", "status": 502, "count": 1}])
    st, payload, _ = sim.request("POST", f"/topapi/v2/department/get?access_token={tok}", b'{"dept_id":1}', raw=True)
    eq(st, 502, "5xx fault")
    sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "throttle", "count": 1})
    eq(get().get("sub_code"), "90018", "throttle fault")
    sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "token_invalid", "count": 1})
    eq(get().get("sub_code"), "40014", "token fault")
    for kind in ["malformed", "truncated"]:
        sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": kind, "count": 1})
        st, payload, _ = sim.request("POST", f"/topapi/v2/department/get?access_token={tok}", b'{"dept_id":1}', raw=True)
        eq(st, 200, f"{kind} status")
        try:
            json.loads(payload)
            raise AssertionError(f"{kind} body parsed as JSON")
        except ValueError:
            pass
    sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "slow", "delay_ms": 1200, "count": 1})
    t0 = time.time()
    eq(get()["errcode"], 0, "slow answer is correct")
    check(time.time() - t0 >= 1.1, "slow fault delays")
    sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "drop", "count": 1})
    c = http.client.HTTPSConnection("127.0.0.1", sim.port, context=certs.ctx, timeout=10)
    try:
        c.request("POST", f"/topapi/v2/department/get?access_token={tok}", body=b'{"dept_id":1}')
        c.getresponse().read()
        raise AssertionError("drop fault answered")
    except (http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError, http.client.IncompleteRead, OSError) as e:
        if isinstance(e, AssertionError):
            raise
    sim.admin("faults", {"path": "/topapi/v2/department/get", "kind": "busy", "probability": 0})
    eq(get()["errcode"], 0, "probability 0 never fires")
    sim.admin("faults", {"path": "/gettoken", "kind": "busy", "probability": 0.5})
    results = [sim.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}")[1]["errcode"] for _ in range(60)]
    check(0 < results.count(-1) < 60, f"probability 0.5 fires sometimes ({results.count(-1)}/60)")
    st, rules = sim.admin("faults")
    check(any(r["kind"] == "busy" and r["hits"] >= 1 for r in rules), "GET /_sim/faults lists hits")
    st, b = sim.admin("faults", {"path": "/x", "kind": "nonsense"})
    eq(st, 400, "bad fault kind")
    eq(sim.admin("faults", None, method="DELETE")[0], 200, "clear faults")
    eq(sim.get(f"/gettoken?appkey={APP_KEY}&appsecret={APP_SECRET}")[1]["errcode"], 0, "cleared")
    sim.admin("faults", {"path": "/v1.0/*", "kind": "busy", "count": 1})
    st, b = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00Z", headers={"x-acs-dingtalk-access-token": tok})
    eq(st, 503, "busy on the api host")
    sim.stop()


def test_mutations(tmp, certs):
    dump_path = os.path.join(tmp, "dump.json")
    sim = Sim(tmp, certs, "--qps", "0", "--dump", dump_path, generate="users=40,departments=5,depth=2,seed=2")
    tok = sim.token()
    st, b = sim.admin("dept/create", {"name": "新部门 🚀", "parent_id": 1, "order": 5})
    eq(st, 200, f"create dept {b}")
    eq(b["events"], ["org_dept_create"], "create event")
    new = b["dept_id"]
    check(new in sim.top("v2/department/listsubid", {"dept_id": 1}, tok)["result"]["dept_id_list"], "visible in listsubid")
    st, b = sim.admin("dept/create", {"name": "子部门", "parent_id": new})
    child = b["dept_id"]
    st, b = sim.admin("dept/update", {"dept_id": new, "name": "改名部门"})
    eq(b["events"], ["org_dept_modify", "org_change"], "rename events")
    eq(sim.top("v2/department/get", {"dept_id": new}, tok)["result"]["name"], "改名部门", "renamed")
    other = next(d for d in sim.top("v2/department/listsubid", {"dept_id": 1}, tok)["result"]["dept_id_list"] if d != new)
    st, b = sim.admin("dept/update", {"dept_id": new, "parent_id": other})
    eq(st, 200, "move dept")
    eq(sim.top("v2/department/listparentbydept", {"dept_id": child}, tok)["result"]["parent_id_list"],
       [child, new, other, 1], "moved subtree")
    st, b = sim.admin("dept/update", {"dept_id": other, "parent_id": child})
    eq(st, 400, "no cycles")
    # Users.
    st, b = sim.admin("user/create", {"userid": "newbie", "name": "新人 ✨", "dept_id_list": [child, 1],
                                      "dept_order_list": [{"dept_id": child, "order": 3}],
                                      "leader_in_dept": [{"dept_id": child, "leader": True}],
                                      "email": "newbie@example.com", "title": "实习生"})
    eq((st, b["events"]), (200, ["user_add_org"]), f"create user {b}")
    r = sim.top("v2/user/get", {"userid": "newbie"}, tok)["result"]
    eq((r["name"], r["dept_id_list"]), ("新人 ✨", [child, 1]), "user/get after create")
    l = sim.top("v2/user/list", {"dept_id": child, "cursor": 0, "size": 10}, tok)["result"]["list"]
    eq([(u["userid"], u["dept_order"], u["leader"]) for u in l], [("newbie", 3, True)], "listed with order/leader")
    eq(sim.top("v2/department/get", {"dept_id": child}, tok)["result"]["dept_manager_userid_list"], ["newbie"],
       "dept managers follow leader flags")
    st, b = sim.admin("user/update", {"userid": "newbie", "name": "老人", "dept_id_list": [new]})
    eq(b["events"], ["user_modify_org"], "modify event")
    r = sim.top("v2/user/get", {"userid": "newbie"}, tok)["result"]
    eq((r["name"], r["dept_id_list"], r["email"]), ("老人", [new], "newbie@example.com"), "partial update + move")
    eq(sim.top("user/listid", {"dept_id": child}, tok)["result"]["userid_list"], [], "moved out")
    st, b = sim.admin("dept/remove", {"dept_id": new})
    eq(st, 400, "cannot remove a department with members")
    st, b = sim.admin("user/create", {"userid": "newbie", "name": "dup", "dept_id_list": [1]})
    eq(st, 400, "duplicate userid")
    st, b = sim.admin("user/create", {"userid": "x", "name": "x", "dept_id_list": [424242]})
    eq(st, 400, "unknown department")
    st, b = sim.admin("user/remove", {"userid": "newbie", "reason": "leave"})
    eq(b["events"], ["user_leave_org"], "leave event")
    eq(sim.top("v2/user/get", {"userid": "newbie"}, tok)["errcode"], 60121, "departed user is 60121")
    st, rec = sim.get("/v1.0/contact/empLeaveRecords?startTime=2020-01-01T00:00:00Z&maxResults=50",
                      headers={"x-acs-dingtalk-access-token": tok})
    check(any(r["userId"] == "newbie" and r["leaveReason"] == "leave" for r in rec["records"]), "leave record")
    eq(sim.admin("dept/remove", {"dept_id": child})[1]["events"], ["org_dept_remove"], "remove dept")
    eq(sim.top("v2/department/get", {"dept_id": child}, tok)["errcode"], 60003, "removed dept is 60003")
    st, b = sim.admin("dept/remove", {"dept_id": 1})
    eq(st, 400, "root cannot go")
    # Dumps: GET /_sim/org, --dump at exit, --org reload round-trips through the binary.
    live = sim.admin("org")[1]
    sim.stop()
    eq(json.load(open(dump_path)), live, "--dump at exit equals GET /_sim/org")
    sim2 = Sim(tmp, certs, "--org", dump_path, generate=None)
    eq(sim2.admin("org")[1], live, "fixture reload round-trips")
    tok2 = sim2.token()
    eq(sim2.top("v2/department/get", {"dept_id": new}, tok2)["result"]["name"], "改名部门", "reloaded org serves")
    sim2.stop()
    # A hand-written minimal fixture, and a bad one.
    fx = os.path.join(tmp, "fixture.json")
    with open(fx, "w") as f:
        json.dump({"departments": [{"dept_id": 1, "name": "Root"}, {"dept_id": 2, "name": "Eng", "parent_id": 1}],
                   "users": [{"userid": "u1", "name": "Ann", "dept_id_list": [2]}]}, f)
    sim3 = Sim(tmp, certs, "--org", fx, generate=None)
    t3 = sim3.token()
    eq(sim3.top("user/listid", {"dept_id": 2}, t3)["result"]["userid_list"], ["u1"], "minimal fixture")
    sim3.stop()
    with open(fx, "w") as f:
        f.write('{"departments":[{"dept_id":2,"name":"x","parent_id":1}]}')
    p = subprocess.run([SIM, "--org", fx, "--cert", certs.cert, "--key", certs.key], capture_output=True, text=True)
    check(p.returncode != 0 and "root" in p.stderr, f"bad fixture rejected: {p.stderr}")
    # Admin token and loopback-only admin.
    sim4 = Sim(tmp, certs, "--admin-token", "s3cret")
    eq(sim4.admin("health")[0], 403, "admin token required")
    st, b = sim4.request("GET", "/_sim/health", headers={"x-sim-admin-token": "s3cret"})
    eq(st, 200, "admin token accepted")
    sim4.stop()


class WebSocket:
    """A minimal RFC 6455 client (text frames, close, ping/pong) over TLS."""

    def __init__(self, url, ctx):
        u = urllib.parse.urlsplit(url)
        raw = socket.create_connection((u.hostname, u.port), timeout=10)
        self.s = ctx.wrap_socket(raw, server_hostname=u.hostname)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1]) if head else 0
        self.closed = False

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([0x80 | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, obj):
        self._send(1, json.dumps(obj).encode())

    def recv(self, timeout=10):
        """Next text frame as JSON, or None once the server closed."""
        self.s.settimeout(timeout)
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            op = b0 & 0x0F
            if op == 1:
                return json.loads(payload)
            if op == 9:
                self._send(10, payload)
            elif op == 8:
                self.closed = True
                return None

    def close(self):
        try:
            self._send(8, struct.pack(">H", 1000))
            self.s.close()
        except OSError:
            pass


def ack(ws, frame, status="SUCCESS", code=200):
    ws.send_json({"code": code, "headers": {"contentType": "application/json", "messageId": frame["headers"]["messageId"]},
                  "message": "OK", "data": json.dumps({"status": status, "message": "x"})})


def next_event(ws, timeout=10):
    while True:
        f = ws.recv(timeout)
        check(f is not None, "connection open")
        if f["type"] == "SYSTEM" and f["headers"]["topic"] == "ping":
            ws.send_json({"code": 200, "headers": f["headers"], "message": "OK", "data": f["data"]})
            continue
        return f


def wait_until(pred, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_stream(sim, subs=None):
    st, b = sim.post("/v1.0/gateway/connections/open",
                     {"clientId": APP_KEY, "clientSecret": APP_SECRET, "ua": "sim-test/1", "localIp": "127.0.0.1",
                      "subscriptions": subs or [{"type": "EVENT", "topic": "*"}]},
                     headers={"Accept": "application/json"})
    eq(st, 200, f"connections/open {b}")
    eq(set(b), {"endpoint", "ticket"}, "open reply keys")
    return b


def test_stream(tmp, certs):
    sim = Sim(tmp, certs, "--stream-ack-timeout-ms", "1500", "--stream-later-delay-ms", "300",
              "--stream-ping-interval", "1", "--stream-disconnect-grace", "1", "--stream-fanout", "one")
    st, b = sim.post("/v1.0/gateway/connections/open", {"clientId": APP_KEY, "clientSecret": "bad"})
    eq((st, b["code"]), (401, "authFailed"), "bad stream credentials")
    o = open_stream(sim)
    check(o["endpoint"].startswith("wss://127.0.0.1:") and o["endpoint"].endswith("/connect"), o["endpoint"])
    url = o["endpoint"] + "?ticket=" + urllib.parse.quote(o["ticket"])
    ws = WebSocket(url, certs.ctx)
    eq(ws.status, 101, "upgrade with a ticket")
    again = WebSocket(url, certs.ctx)
    eq(again.status, 401, "ticket is single-use")
    bogus = WebSocket(o["endpoint"] + "?ticket=nope", certs.ctx)
    eq(bogus.status, 401, "unknown ticket")
    wait_until(lambda: sim.admin("events")[1]["stream"]["connections_open"] == 1, "connection registered")
    # EVENT frame shape and ACK.
    sim.admin("user/create", {"userid": "s1", "name": "流 🌊", "dept_id_list": [1]})
    f = next_event(ws)
    eq((f["specVersion"], f["type"]), ("1.0", "EVENT"), "frame type")
    h = f["headers"]
    for k in ["appId", "connectionId", "contentType", "messageId", "time", "topic", "eventId", "eventBornTime",
              "eventCorpId", "eventType", "eventUnifiedAppId"]:
        check(isinstance(h[k], str), f"header {k} is a string")
    eq((h["eventType"], h["eventCorpId"], h["topic"]), ("user_add_org", CORP_ID, "*"), "headers")
    check(isinstance(f["data"], str), "data is a JSON string")
    d = json.loads(f["data"])
    eq(d["userId"], ["s1"], "camelCase userId array")
    check(isinstance(d["timeStamp"], str) and d["eventId"] == h["eventId"], "data timeStamp/eventId")
    ack(ws, f)
    wait_until(lambda: sim.admin("events")[1]["stream"]["acks"] == 1, "ack recorded")
    # Dept event carries deptId ints.
    st, b = sim.admin("dept/create", {"name": "S", "parent_id": 1})
    f = next_event(ws)
    eq((f["headers"]["eventType"], json.loads(f["data"])["deptId"]), ("org_dept_create", [b["dept_id"]]), "dept event")
    ack(ws, f)
    # LATER is redelivered with the same eventId.
    sim.admin("user/update", {"userid": "s1", "name": "改"})
    f1 = next_event(ws)
    ack(ws, f1, status="LATER", code=500)
    f2 = next_event(ws)
    eq((f2["headers"]["eventId"], f2["headers"]["eventType"]), (f1["headers"]["eventId"], "user_modify_org"), "LATER redelivered")
    ack(ws, f2)
    # No ACK: redelivered after the ack timeout.
    sim.admin("user/remove", {"userid": "s1"})
    g1 = next_event(ws)
    g2 = next_event(ws, timeout=10)
    eq(g2["headers"]["eventId"], g1["headers"]["eventId"], "unacked event redelivered")
    ack(ws, g2)
    # Pings are answered by next_event; the server counts the echoes.
    wait_until(lambda: sim.admin("events")[1]["stream"]["pongs"] >= 1, "ping echoed")
    # Disconnect: SYSTEM frame, then the server closes; unacked events go to the next connection.
    sim.admin("stream/disconnect", {})
    f = next_event(ws)
    eq((f["type"], f["headers"]["topic"]), ("SYSTEM", "disconnect"), "disconnect frame")
    check("reason" in json.loads(f["data"]), "disconnect reason")
    sim.admin("user/create", {"userid": "s2", "name": "queued", "dept_id_list": [1]})  # no eligible connection now
    end = ws.recv(timeout=5)
    while end is not None:
        end = ws.recv(timeout=5)
    check(ws.closed, "server closed after the grace period")
    o = open_stream(sim)
    ws2 = WebSocket(o["endpoint"] + "?ticket=" + o["ticket"], certs.ctx)
    f = next_event(ws2)
    eq((f["headers"]["eventType"], json.loads(f["data"])["userId"]), ("user_add_org", ["s2"]), "queued event delivered on reconnect")
    ack(ws2, f)
    d = sim.admin("dept/create", {"name": "T", "parent_id": 1})[1]["dept_id"]
    sim.admin("dept/update", {"dept_id": d, "name": "T2"})
    sim.admin("dept/remove", {"dept_id": d})
    got = []
    for _ in range(4):
        f = next_event(ws2)
        ack(ws2, f)
        got.append((f["headers"]["eventType"], json.loads(f["data"]).get("deptId")))
    eq(got, [("org_dept_create", [d]), ("org_dept_modify", [d]), ("org_change", None), ("org_dept_remove", [d])],
       "department mutations stream in order")
    wait_until(lambda: all(e["acked"] for e in sim.admin("events")[1]["stream"]["events"]), "acks recorded")
    st, ev = sim.admin("events")
    check(all(e["acked"] for e in ev["stream"]["events"]), "all events acked")
    check(ev["stream"]["redeliveries"] >= 2, "redeliveries counted")
    ws2.close()
    sim.stop()
    # Periodic disconnect.
    sim = Sim(tmp, certs, "--stream-disconnect-after", "1", "--stream-disconnect-grace", "1", "--stream-ping-interval", "0")
    o = open_stream(sim)
    ws = WebSocket(o["endpoint"] + "?ticket=" + o["ticket"], certs.ctx)
    f = ws.recv(timeout=5)
    eq(f["headers"]["topic"], "disconnect", "periodic disconnect")
    sim.stop()


def openssl_aes(key, data, decrypt):
    args = ["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", key[:16].hex(), "-nopad"]
    if decrypt:
        args.append("-d")
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


class PushReceiver(http.server.BaseHTTPRequestHandler):
    """Decrypts DingTalk pushes with the openssl CLI (independent of the simulator's code)."""
    token = "pushtoken1"
    aes_key = "abcdefghijABCDEFGHIJ0123456789abcdefghijABC"
    received, fail_first = [], 0
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        enc = body["encrypt"]
        sig = hashlib.sha1("".join(sorted([self.token, q["timeStamp"], q["nonce"], enc])).encode()).hexdigest()
        key = base64.b64decode(self.aes_key + "=")
        plain = openssl_aes(key, base64.b64decode(enc), True)
        plain = plain[:-plain[-1]]
        n = struct.unpack(">I", plain[16:20])[0]
        msg, owner = plain[20:20 + n].decode(), plain[20 + n:].decode()
        with self.lock:
            self.received.append({"sig_ok": sig == q["msg_signature"], "owner": owner, "event": json.loads(msg)})
            fail = PushReceiver.fail_first > 0
            if fail:
                PushReceiver.fail_first -= 1
        if fail:
            out = b"success"  # a plain success counts as a failure (§5)
        else:
            pt = os.urandom(8).hex().encode() + struct.pack(">I", 7) + b"success" + owner.encode()
            pad = 32 - len(pt) % 32
            ct = base64.b64encode(openssl_aes(key, pt + bytes([pad]) * pad, False)).decode()
            ts, nonce = str(int(time.time() * 1000)), "n" * 16
            rsig = hashlib.sha1("".join(sorted([self.token, ts, nonce, ct])).encode()).hexdigest()
            out = json.dumps({"msg_signature": rsig, "timeStamp": ts, "nonce": nonce, "encrypt": ct}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_push(tmp, certs):
    PushReceiver.fail_first = 2
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PushReceiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/dingtalk/callback"
    sim = Sim(tmp, certs, "--push-url", url, "--push-token", PushReceiver.token, "--push-aes-key", PushReceiver.aes_key,
              "--push-retry-ms", "100", "--push-retry-max-ms", "400")
    wait_until(lambda: len(PushReceiver.received) >= 3, "check_url retried until encrypted success")
    first = PushReceiver.received[0]
    eq(first["event"], {"EventType": "check_url"}, "check_url first")
    check(first["sig_ok"], "signature verifies")
    eq(first["owner"], APP_KEY, "ownerKey is the AppKey")
    sim.admin("user/create", {"userid": "p1", "name": "推送", "dept_id_list": [1]})
    dept = sim.admin("dept/create", {"name": "P", "parent_id": 1})[1]["dept_id"]
    sim.admin("dept/update", {"dept_id": dept, "name": "P2"})
    sim.admin("user/update", {"userid": "p1", "title": "x"})
    sim.admin("user/remove", {"userid": "p1"})
    sim.admin("dept/remove", {"dept_id": dept})
    ev = wait_until(lambda: [r["event"] for r in PushReceiver.received if r["event"]["EventType"] != "check_url"]
                    if len(PushReceiver.received) >= 10 else None, "events pushed")
    eq([(e["EventType"], e.get("UserId"), e.get("DeptId")) for e in ev],
       [("user_add_org", ["p1"], None), ("org_dept_create", None, [dept]), ("org_dept_modify", None, [dept]),
        ("org_change", None, None), ("user_modify_org", ["p1"], None), ("user_leave_org", ["p1"], None),
        ("org_dept_remove", None, [dept])], "every mutation pushes its event, in order")
    e = ev[0]
    eq((e["EventType"], e["UserId"], e["CorpId"]), ("user_add_org", ["p1"], CORP_ID), "user event")
    check(isinstance(e["TimeStamp"], str), "TimeStamp is a string")
    eq(ev[1]["EventType"], "org_dept_create", "dept event")
    check(isinstance(ev[1]["DeptId"][0], int), "DeptId ints")
    check(all(r["sig_ok"] for r in PushReceiver.received), "all signatures verify")
    st, status = sim.admin("events")
    items = status["push"]["items"]
    check(items[0]["delivered"] and items[0]["attempts"] == 3, f"check_url attempts {items[0]}")
    wait_until(lambda: all(i["delivered"] for i in sim.admin("events")[1]["push"]["items"]), "all delivered")
    sim.stop()
    srv.shutdown()


GROUPS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in GROUPS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(GROUPS)}}}")
    with tempfile.TemporaryDirectory(prefix="dingtalk-sim-test-") as tmp:
        certs = Certs(tmp)
        t0 = time.time()
        GROUPS[sys.argv[1]](tmp, certs)
        print(f"sim_{sys.argv[1]}: ok ({time.time() - t0:.1f}s)")
