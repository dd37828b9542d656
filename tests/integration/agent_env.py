"""Test environment for dingbridge-agent integration tests: a test CA, the DingTalk simulator
(allow-listing only the proxy's egress address 127.0.0.2), dingbridge-proxy bound to that egress
address, and agent.yaml/mapping.yaml in a temporary directory. Loopback only, port 0 everywhere.

Binary paths come from DINGTALK_SIM, DINGBRIDGE_PROXY and DINGBRIDGE_AGENT.
"""
import json
import os
import subprocess
import sys
import urllib.request
import ssl
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (certificates, proxy runner)

SIM_BIN = os.environ.get("DINGTALK_SIM", "dingtalk-sim")
AGENT_BIN = os.environ.get("DINGBRIDGE_AGENT", "dingbridge-agent")
REPO = Path(__file__).resolve().parents[2]

APP_KEY = "dingsimappkey"
APP_SECRET = "Sim-S3cret-Value-7f3a9c"
PROXY_PASSWORD = "Proxy-Pa55-Value-91bd2e"
EGRESS = "127.0.0.2"


class Sim:
    def __init__(self, workdir, ca, cert, key, generate, qps=0, extra=()):
        self.dir = Path(workdir)
        self.port_file = self.dir / "sim.port"
        self.log = open(self.dir / "sim.log", "w+")
        cmd = [SIM_BIN, "--listen", "127.0.0.1:0", "--port-file", str(self.port_file), "--cert", cert, "--key", key,
               "--app-key", APP_KEY, "--app-secret", APP_SECRET, "--allow-source", EGRESS,
               *(("--generate", generate) if generate else ()), "--qps", str(qps), "--source-limit", "0",
               "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        harness.wait_until(lambda: self.port_file.exists() and self.port_file.read_text().strip(), self.proc,
                           "dingtalk-sim", 60, lambda: Path(self.log.name).read_text(), interval=0.05)
        self.port = int(self.port_file.read_text().strip())
        self.base = f"https://127.0.0.1:{self.port}"
        self.ctx = ssl.create_default_context(cafile=ca)

    def admin(self, method, path, body=None):
        """Admin endpoints are loopback-only on the sim itself (not through the proxy)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return json.loads(r.read().decode() or "null")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}")

    def org(self):
        return self.admin("GET", "/_sim/org")

    def stats(self):
        return self.admin("GET", "/_sim/stats")

    def stop(self):
        """SIGTERM: like the programs under test, the simulator must exit 0 (a crash of the
        stand-in would otherwise go unseen; it is not built with the sanitizers)."""
        ended = harness.stop_process(self.proc)
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        harness.check_ended("dingtalk-sim", self.proc.returncode, text, "SIGTERM", killed_after=None if ended else 10)


def with_log_file(config_text, path):
    """An agent.yaml text written by Env whose log goes to the file `path` instead of stderr."""
    if "log:\n  level: info\n" not in config_text:
        raise AssertionError("no 'log:' section as Env writes it in:\n" + config_text)
    return config_text.replace("log:\n  level: info\n", f'log:\n  level: info\n  file: "{path}"\n')


def proxy_config(sim_port, password_hash, tls=None, listen_port=0, stream_host=None):
    listener = f'  - address: "127.0.0.1:{listen_port}"\n'
    if tls:
        listener += f'    tls:\n      certificate: "{tls[0]}"\n      key: "{tls[1]}"\n'
    return f"""
listeners:
{listener}workers: 1
outgoing:
  bind_address: "{EGRESS}"
tenants:
  - name: dingbridge-agent
    users:
      - name: agent
        password_hash: "{password_hash}"
    source_networks: ["127.0.0.0/8"]
    destinations: ["127.0.0.1:{sim_port}"{f', "{stream_host}:{sim_port}"' if stream_host else ""}]
    allow_internal_networks: ["127.0.0.0/8"]
# A stop cuts the tunnels still open (run mode's event stream) after 2 s, not the default 30: the
# harness waits 10 s for a SIGTERM, and a proxy killed then would not be checked for leaks.
limits:
  shutdown_grace: 2s
log:
  level: info
access_log:
  format: json
"""


class Env:
    """Sim + proxy + agent config in one temporary directory."""

    def __init__(self, generate="users=60,departments=12,depth=3,seed=7", qps=0, agent_qps=50, concurrency=4,
                 mapping_text=None, sim_extra=(), with_proxy=True, max_deletes="50%", extra_yaml="",
                 proxy_tls=False, agent_qps_total=400, stream_host=None):
        self.work = harness.Workdir()
        self.dir = Path(self.work.path)
        self.ca, cert, key = harness.make_ca_and_cert(self.dir)
        self.sim = Sim(self.dir, self.ca, cert, key, generate, qps=qps, extra=sim_extra)
        self.proxy = None
        self.proxy_tls = proxy_tls
        if with_proxy:
            self.proxy = harness.Proxy(self.dir, proxy_config(self.sim.port, harness.hash_password(PROXY_PASSWORD),
                                                              (cert, key) if proxy_tls else None,
                                                              stream_host=stream_host))
        self.stream_host = stream_host
        self._tls = (cert, key) if proxy_tls else None
        self.state = self.dir / "state"
        self.mapping = self.dir / "mapping.yaml"
        self.mapping.write_text(mapping_text if mapping_text is not None else (REPO / "configs" / "mapping.yaml").read_text())
        self.agent_qps_total = agent_qps_total
        self.write_config(agent_qps=agent_qps, concurrency=concurrency, max_deletes=max_deletes, extra_yaml=extra_yaml)
        self.env = dict(os.environ, SIM_APP_SECRET=APP_SECRET, SIM_PROXY_PASSWORD=PROXY_PASSWORD)

    def write_config(self, agent_qps=50, concurrency=4, max_deletes="50%", proxy_url=None, password_ref=None,
                     extra_yaml="", with_proxy=None):
        with_proxy = self.proxy is not None if with_proxy is None else with_proxy
        proxy = ""
        if with_proxy:
            scheme = "https" if self.proxy_tls else "http"
            url = proxy_url or f"{scheme}://127.0.0.1:{self.proxy.port}"
            proxy = f"""proxy:
  url: "{url}"
  username: agent
  password: "{password_ref or '${env:SIM_PROXY_PASSWORD}'}"
  ca_file: "{self.ca}"
"""
        self.config = self.dir / "agent.yaml"
        self.config.write_text(f"""dingtalk:
  corp_id: dingsimcorp
  app_key: {APP_KEY}
  app_secret: "${{env:SIM_APP_SECRET}}"
  oapi_base_url: "{self.sim.base}"
  api_base_url: "{self.sim.base}"
  ca_file: "{self.ca}"
  qps: {agent_qps}
  qps_total: {getattr(self, "agent_qps_total", 400)}
  concurrency: {concurrency}
  backoff_base: 50ms
  backoff_max: 2s
  request_timeout: 20s
{proxy}target:
  type: sqlite
mapping: "{self.mapping}"
safeguard:
  max_deletes: "{max_deletes}"
state_dir: "{self.state}"
progress_interval: 1s
log:
  level: info
{extra_yaml}""")

    def restart_proxy(self):
        """Stops the proxy and starts it again on the same port (a proxy restart)."""
        port = self.proxy.port
        self.proxy.stop()
        self.proxy = harness.Proxy(self.dir, proxy_config(self.sim.port, harness.hash_password(PROXY_PASSWORD),
                                                          self._tls, listen_port=port, stream_host=self.stream_host),
                                   name="proxy2")

    def agent(self, *args, timeout=240, check=None):
        p = subprocess.run([AGENT_BIN, "-c", str(self.config), *args], capture_output=True, text=True,
                           timeout=timeout, env=self.env)
        harness.check_ended(f"agent {args}", p.returncode, p.stderr)  # a sanitizer report, whatever the exit
        if check is not None and p.returncode != check:
            raise AssertionError(f"agent {args} exited {p.returncode}, expected {check}\nstdout:\n{p.stdout}\n"
                                 f"stderr:\n{p.stderr[-6000:]}")
        return p

    def history(self):
        return json.loads(self.agent("history", "--json", check=0).stdout)

    def run_detail(self, run_id):
        return json.loads(self.agent("history", "show", str(run_id), "--json", check=0).stdout)

    def target_db(self):
        return self.state / "org.db"

    def stop(self):
        """Stops the proxy and the simulator (each checked for how it ended) and removes the
        work directory, all three even when a check fails first."""
        try:
            if self.proxy:
                self.proxy.stop()
        finally:
            try:
                self.sim.stop()
            finally:
                self.work.cleanup()


# ---- the default mapping (configs/mapping.yaml), re-implemented independently for comparison ----

def _date_cn(ms):
    if not ms:
        return ""
    import datetime
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone(datetime.timedelta(hours=8)))
    return t.strftime("%Y-%m-%d")


def _e164(number, cc):
    if not number:
        return ""
    digits = "".join(c for c in number if c.isdigit())
    if not digits:
        return ""
    if number.lstrip().startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return "+" + (cc or "86") + digits


def expected_org(dump):
    """The identity org the default mapping should produce from a simulator --dump / /_sim/org."""
    depts = {}
    for d in dump["departments"]:
        did = str(d["dept_id"])
        depts[did] = {
            "name": d["name"],
            "parent": None if d["dept_id"] == 1 else str(d["parent_id"]),
            "order": d.get("order", 0),
            "description": d.get("brief", ""),
            "leaders": list(d.get("dept_manager_userid_list", [])),
        }
    users = {}
    for u in dump["users"]:
        email_local = u.get("email", "").split("@")[0] if u.get("email") else ""
        username = (email_local or u.get("job_number", "") or u["userid"]).lower().strip()
        orders = {str(x["dept_id"]): x["order"] for x in u.get("dept_order_list", [])}
        leaders = {str(x["dept_id"]): x["leader"] for x in u.get("leader_in_dept", [])}
        ms = [(str(d), orders.get(str(d), 0), leaders.get(str(d), False)) for d in u["dept_id_list"]]
        users[u["userid"]] = {
            "union_id": u.get("unionid", ""),
            "username": username,
            "display_name": u["name"].strip(),
            "email": (u.get("org_email") or u.get("email") or "").lower().strip(),
            "phone": _e164(u.get("mobile", ""), u.get("state_code") or "86"),
            "employee_number": u.get("job_number", ""),
            "title": u.get("title", ""),
            "active": bool(u.get("active", True)),
            "avatar_url": u.get("avatar", ""),
            "hired_at": _date_cn(u.get("hired_date", 0)),
            "memberships": ms,
            "primary": ms[0][0],
        }
    for d in depts.values():
        d["leaders"] = [x for x in d["leaders"] if x in users]
    for uid, u in users.items():
        dept, manager = u["primary"], ""
        while dept and not manager:
            for leader in depts[dept]["leaders"]:
                if leader != uid and leader in users:
                    manager = leader
                    break
            dept = depts[dept]["parent"]
        u["manager"] = manager
    return {"departments": depts, "users": users}


def target_org(db_path, include_removed=False):
    """The SQLite target read back with the sqlite3 module, in expected_org's shape."""
    import sqlite3
    con = sqlite3.connect(str(db_path))
    try:
        depts = {}
        for row in con.execute("SELECT external_id, name, parent_external_id, sort_order, description, leaders "
                               "FROM departments"):
            depts[row[0]] = {"name": row[1], "parent": row[2], "order": row[3], "description": row[4],
                             "leaders": json.loads(row[5])}
        ms = {}
        for row in con.execute("SELECT user_external_id, department_external_id, sort_order, is_leader FROM "
                               "user_departments ORDER BY user_external_id, position"):
            ms.setdefault(row[0], []).append((row[1], row[2], bool(row[3])))
        users = {}
        q = ("SELECT external_id, union_id, username, display_name, email, phone, employee_number, title, active, "
             "avatar_url, hired_at, primary_department, manager, removed_at FROM users")
        for r in con.execute(q):
            if r[13] is not None and not include_removed:
                continue
            users[r[0]] = {"union_id": r[1], "username": r[2] or "", "display_name": r[3], "email": r[4] or "",
                           "phone": r[5] or "", "employee_number": r[6], "title": r[7], "active": bool(r[8]),
                           "avatar_url": r[9], "hired_at": r[10], "memberships": ms.get(r[0], []),
                           "primary": r[11], "manager": r[12] or ""}
        return {"departments": depts, "users": users}
    finally:
        con.close()


def db_rows(db_path):
    """Every row of the target's tables (for 'unchanged' checks)."""
    import sqlite3
    con = sqlite3.connect(str(db_path))
    try:
        out = {}
        for t in ("departments", "users", "user_departments"):
            out[t] = sorted(tuple(x for i, x in enumerate(row)) for row in con.execute(f"SELECT * FROM {t}"))
        return out
    finally:
        con.close()


def diff_orgs(expected, actual):
    """A readable list of differences (empty when equal)."""
    problems = []
    for kind in ("departments", "users"):
        e, a = expected[kind], actual[kind]
        for k in sorted(set(e) - set(a))[:5]:
            problems.append(f"{kind} {k} missing from the target")
        for k in sorted(set(a) - set(e))[:5]:
            problems.append(f"{kind} {k} in the target but not expected")
        for k in sorted(set(e) & set(a)):
            for f in e[k]:
                if e[k][f] != a[k].get(f):
                    problems.append(f"{kind} {k}.{f}: expected {e[k][f]!r}, target has {a[k].get(f)!r}")
            if len(problems) > 20:
                return problems
    return problems


def expected_changes(before, after):
    """Counts of the plan that takes `before` to `after` (both expected_org shapes)."""
    c = {"create_department": 0, "update_department": 0, "delete_department": 0, "create_user": 0,
         "update_user": 0, "disable_user": 0, "delete_user": 0}
    for kind, create, update, remove in (("departments", "create_department", "update_department", "delete_department"),
                                         ("users", "create_user", "update_user", "disable_user")):
        b, a = before[kind], after[kind]
        c[create] += len(set(a) - set(b))
        c[remove] += len(set(b) - set(a))
        c[update] += sum(1 for k in set(a) & set(b) if a[k] != b[k])
    return c
