"""Test environment for dingbridge-agent integration tests: a test CA, the DingTalk simulator
(allow-listing only the proxy's egress address 127.0.0.2), dingbridge-proxy bound to that egress
address, and agent.yaml/mapping.yaml in a temporary directory. Loopback only, port 0 everywhere.

Binary paths come from DINGTALK_SIM, DINGBRIDGE_PROXY and DINGBRIDGE_AGENT.
"""
import json
import os
import signal
import subprocess
import sys
import time
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
               "--generate", generate, "--qps", str(qps), "--source-limit", "0", "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError("dingtalk-sim exited: " + Path(self.log.name).read_text())
            if time.time() > deadline:
                raise RuntimeError("dingtalk-sim did not start")
            time.sleep(0.05)
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def proxy_config(sim_port, password_hash):
    return f"""
listeners:
  - address: "127.0.0.1:0"
workers: 1
outgoing:
  bind_address: "{EGRESS}"
tenants:
  - name: dingbridge-agent
    users:
      - name: agent
        password_hash: "{password_hash}"
    source_networks: ["127.0.0.0/8"]
    destinations: ["127.0.0.1:{sim_port}"]
    allow_internal_networks: ["127.0.0.0/8"]
log:
  level: info
access_log:
  format: json
"""


class Env:
    """Sim + proxy + agent config in one temporary directory."""

    def __init__(self, generate="users=60,departments=12,depth=3,seed=7", qps=0, agent_qps=50, concurrency=4,
                 mapping_text=None, sim_extra=(), with_proxy=True, max_deletes="50%", extra_yaml=""):
        self.work = harness.Workdir()
        self.dir = Path(self.work.path)
        self.ca, cert, key = harness.make_ca_and_cert(self.dir)
        self.sim = Sim(self.dir, self.ca, cert, key, generate, qps=qps, extra=sim_extra)
        self.proxy = None
        if with_proxy:
            self.proxy = harness.Proxy(self.dir, proxy_config(self.sim.port, harness.hash_password(PROXY_PASSWORD)))
        self.state = self.dir / "state"
        self.mapping = self.dir / "mapping.yaml"
        self.mapping.write_text(mapping_text if mapping_text is not None else (REPO / "configs" / "mapping.yaml").read_text())
        self.write_config(agent_qps=agent_qps, concurrency=concurrency, max_deletes=max_deletes, extra_yaml=extra_yaml)
        self.env = dict(os.environ, SIM_APP_SECRET=APP_SECRET, SIM_PROXY_PASSWORD=PROXY_PASSWORD)

    def write_config(self, agent_qps=50, concurrency=4, max_deletes="50%", proxy_url=None, password_ref=None,
                     extra_yaml="", with_proxy=None):
        with_proxy = self.proxy is not None if with_proxy is None else with_proxy
        proxy = ""
        if with_proxy:
            url = proxy_url or f"http://127.0.0.1:{self.proxy.port}"
            proxy = f"""proxy:
  url: "{url}"
  username: agent
  password: "{password_ref or '${env:SIM_PROXY_PASSWORD}'}"
"""
        self.config = self.dir / "agent.yaml"
        self.config.write_text(f"""dingtalk:
  corp_id: dingsimcorp
  app_key: {APP_KEY}
  app_secret: "${{env:SIM_APP_SECRET}}"
  oapi_base_url: "{self.sim.base}"
  ca_file: "{self.ca}"
  qps: {agent_qps}
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

    def agent(self, *args, timeout=240, check=None):
        p = subprocess.run([AGENT_BIN, "-c", str(self.config), *args], capture_output=True, text=True,
                           timeout=timeout, env=self.env)
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
        if self.proxy:
            self.proxy.stop()
        self.sim.stop()
        self.work.cleanup()
