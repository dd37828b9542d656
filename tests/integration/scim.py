"""The SCIM 2.0 test server (tests/scim/server.js: scimmy + scimmy-routers on express 4) for tests
and benchmarks: started with node on a free loopback port, optionally with TLS from a test CA, its
store a JSON file in the test's directory. scripts/setup.sh installs its npm packages (npm ci).
"""
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tests" / "scim" / "server.js"
NODE = shutil.which("node") or "/usr/bin/node"
TOKEN = "Scim-Bearer-Token-5c8e1f0a77"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEPARTMENT = "urn:ietf:params:scim:schemas:extension:dingbridge:2.0:Department"


class ScimServer:
    def __init__(self, workdir, ca=None, cert=None, key=None, patch=True, name="scim"):
        if not (REPO / "tests" / "scim" / "node_modules").is_dir():
            raise RuntimeError("tests/scim/node_modules is missing: run scripts/setup.sh (npm ci in tests/scim)")
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token_file = self.dir / "token"
        self.token_file.write_text(TOKEN)
        self.token_file.chmod(0o600)
        self.store = self.dir / "store.json"
        self.args = ["--store", str(self.store), "--token-file", str(self.token_file)]
        if cert:
            self.args += ["--cert", cert, "--key", key]
        if not patch:
            self.args.append("--no-patch")
        self.scheme = "https" if cert else "http"
        self.ctx = ssl.create_default_context(cafile=ca) if cert else None
        self.log = open(self.dir / "server.log", "a")
        self.port = 0
        self.start()

    def start(self):
        self.proc = subprocess.Popen([NODE, str(SERVER), "--port", str(self.port), *self.args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError("the SCIM server did not start: " + (self.dir / "server.log").read_text()[-3000:])
        self.port = json.loads(line)["port"]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def close(self):
        self.stop()
        self.log.close()

    def request(self, method, path, body=None, token=TOKEN):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/scim+json",
                                              "Authorization": "Bearer " + token})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=60) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, (json.loads(text) if text else None)

    def all(self, endpoint):
        """Every resource of /Users or /Groups, read page by page."""
        out, start = [], 1
        while True:
            status, page = self.request("GET", f"{endpoint}?startIndex={start}&count=1000")
            assert status == 200, (status, page)
            got = page.get("Resources", [])
            out += got
            start += len(got)
            if not got or start > page["totalResults"]:
                return out

    def create_user(self, body):
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], **body}
        return self.request("POST", "/Users", body)

    def faults(self, mode, count, **kw):
        status, body = self.request("POST", "/admin/faults", {"mode": mode, "count": count, **kw})
        assert status == 200, body
        return body

    def stats(self):
        return self.request("GET", "/admin/stats")[1]

    def reset_stats(self):
        self.request("POST", "/admin/stats/reset", {})


def scim_state(server):
    """The server's resources in expected_scim's shape, DingTalk ids throughout:
    ({dept: (displayName, parent, sorted member user ids, leaders in order)}, {user: {...}}, {user: active})."""
    users = server.all("/Users")
    groups = server.all("/Groups")
    ext_of = {u["id"]: u.get("externalId") for u in users}
    out_users, active = {}, {}
    for u in users:
        if not u.get("externalId"):
            continue
        ent = u.get(ENTERPRISE, {})
        manager = ent.get("manager", {}).get("value")
        emails = u.get("emails", [])
        phones = u.get("phoneNumbers", [])
        active[u["externalId"]] = u.get("active", True)
        out_users[u["externalId"]] = {
            "userName": u["userName"], "displayName": u.get("displayName", ""),
            "email": emails[0]["value"] if emails else "", "phone": phones[0]["value"] if phones else "",
            "title": u.get("title", ""), "employeeNumber": ent.get("employeeNumber", ""),
            "department": ent.get("department", ""), "manager": ext_of.get(manager, manager) if manager else "",
        }
    out_groups = {}
    for g in groups:
        if not g.get("externalId"):
            continue
        members = sorted(ext_of.get(m["value"], "?" + m["value"]) for m in g.get("members", []))
        ext = g.get(DEPARTMENT, {})
        out_groups[g["externalId"]] = (g["displayName"], ext.get("parent"), members, ext.get("leaders", []))
    return out_groups, out_users, active


def expected_scim(exp):
    """What the server must hold for expected_org(...) (agent_env.py) under the default mapping."""
    depts, users = exp["departments"], exp["users"]
    groups = {}
    for i, d in depts.items():
        members = sorted(u for u, x in users.items() if i in [m[0] for m in x["memberships"]])
        groups[i] = (d["name"], d["parent"], members, d["leaders"])
    out = {}
    for i, u in users.items():
        out[i] = {"userName": u["username"] or i, "displayName": u["display_name"], "email": u["email"],
                  "phone": u["phone"], "title": u["title"], "employeeNumber": u["employee_number"],
                  "department": u["primary"], "manager": u["manager"] if u["manager"] in users else ""}
    return groups, out
