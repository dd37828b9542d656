"""Installs the .deb into this machine (a throwaway CI machine; root), runs both services the way
their units would (user, EnvironmentFile, command line, umask, taken from the installed unit
files), checks that the proxy serves and that the agent syncs the DingTalk simulator through it,
upgrades to a rebuilt package with locally edited configuration (kept), and purges (nothing left
that policy says to remove). Runs only as root with DINGBRIDGE_PACKAGE_INSTALL_TEST=1 (.ci/run
sets it): it changes the machine. The agent runs `sync` (dingbridge-agent-sync.service's command);
dingbridge-agent.service's `run` is checked by its presence and enablement only."""
import grp
import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))
import pkg  # noqa: E402
import harness  # noqa: E402
import agent_env  # noqa: E402

ETC = Path("/etc/dingbridge")
UNIT_DIR = Path("/lib/systemd/system")
DSH = Path("/var/lib/systemd/deb-systemd-helper-enabled")
ENABLED = ["dingbridge-proxy.service", "dingbridge-agent.service"]
ALL_UNITS = ENABLED + ["dingbridge-agent-sync.service", "dingbridge-agent-sync.timer", "dingbridge-agent-web.service"]
SECRET_FILES = ["proxy.yaml", "agent.yaml", "mapping.yaml", "proxy.env", "agent.env"]


def sh(*cmd, check=True, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def installed_version():
    p = sh("dpkg-query", "-W", "-f=${Status} ${Version}", "dingbridge", check=False)
    return p.stdout.split()[-1] if p.returncode == 0 and "install ok installed" in p.stdout else None


def unit(name):
    """The settings of an installed unit that decide how its process runs."""
    out = {}
    for line in (UNIT_DIR / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def env_file(path):
    """systemd's EnvironmentFile= reading: KEY=VALUE lines, comments, optional quotes."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k.strip()] = v
    return env


def as_unit(name, command_key="ExecStart", popen=False, stdout=None):
    """Runs the unit's command as its User/Group with its Environment, EnvironmentFile and UMask, cwd /."""
    u = unit(name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for assignment in u.get("Environment", []):
        k, v = assignment.split("=", 1)
        env[k] = v
    for f in u.get("EnvironmentFile", []):  # systemd: the files override Environment=
        optional = f.startswith("-")
        f = f.lstrip("-")
        if Path(f).exists() or not optional:
            env.update(env_file(f))
    user, group = u["User"][0], u["Group"][0]
    cmd = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--no-new-privs", "--",
           *u[command_key][0].split()]
    umask = int(u.get("UMask", ["0022"])[0], 8)
    if popen:
        return subprocess.Popen(cmd, env=env, cwd="/", umask=umask, stdout=stdout, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, cwd="/", umask=umask, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def owner_mode(path):
    st = os.stat(path)
    return f"{pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name} {stat.S_IMODE(st.st_mode):04o}"


@unittest.skipUnless(os.geteuid() == 0 and os.environ.get("DINGBRIDGE_PACKAGE_INSTALL_TEST") == "1",
                     "changes the machine: root and DINGBRIDGE_PACKAGE_INSTALL_TEST=1 only (CI)")
class InstallUpgradePurge(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="dingbridge-pkg-")
        self.dir = Path(self.tmp.name)
        os.chmod(self.dir, 0o755)  # the service user reads the test CA from here
        self.procs = []
        self.sim = None
        if installed_version():
            sh("dpkg", "--purge", "dingbridge")

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        if self.sim:
            self.sim.stop()
        if installed_version():
            sh("dpkg", "--purge", "dingbridge", check=False)
        self.tmp.cleanup()

    def start_proxy(self):
        log = open(self.dir / f"proxy-{len(self.procs)}.log", "w+")
        self.addCleanup(log.close)
        pre = as_unit("dingbridge-proxy.service", "ExecStartPre")
        self.assertEqual(pre.returncode, 0, pre.stdout + pre.stderr)
        proc = as_unit("dingbridge-proxy.service", popen=True, stdout=log)
        proc.log_path = Path(log.name)  # what it printed: rotate_logs waits for its reload line there
        self.procs.append(proc)
        try:
            harness.wait_until(lambda: harness.port_open(self.proxy_port), proc, "proxy", 30, interval=0.1)
        except RuntimeError as e:
            log.seek(0)
            raise AssertionError(f"proxy did not start ({e}): " + log.read())
        return proc

    def rotate_logs(self, proxy):
        """The packaged logrotate file, forced: the running proxy (no systemd here: postrotate's
        pkill branch) must write its next lines to the new access.log, not the rotated one."""
        access, rotated = Path("/var/log/dingbridge/access.log"), Path("/var/log/dingbridge/access.log.1")
        before = len(access.read_text().splitlines())
        sh("logrotate", "-f", "/etc/logrotate.d/dingbridge")
        self.assertEqual(len(rotated.read_text().splitlines()), before)
        harness.wait_until(lambda: "configuration reloaded" in proxy.log_path.read_text(), proxy,
                           "the proxy's reload", 10, interval=0.1)
        self.sync_and_compare()
        self.assertIsNone(proxy.poll())
        self.assertEqual(len(rotated.read_text().splitlines()), before, "lines went to the rotated file")
        self.assertTrue(access.read_text().strip(), "no line in the new access.log")
        self.assertEqual(owner_mode(access), "dingbridge:dingbridge 0640")

    def stop(self, proc):
        proc.terminate()
        self.assertEqual(proc.wait(60), 0)

    def sync_and_compare(self):
        p = as_unit("dingbridge-agent-sync.service")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr[-4000:])
        self.assertEqual(agent_env.diff_orgs(agent_env.expected_org(self.sim.org()),
                                             agent_env.target_org("/var/lib/dingbridge/org.db")), [])
        self.assertEqual(owner_mode("/var/lib/dingbridge/org.db").split()[0], "dingbridge:dingbridge")
        return p

    def configure(self, ca):
        """What docs/install.md tells an administrator to do: proxy.yaml, agent.yaml, the env files."""
        harness.PROXY_BIN = "/usr/bin/dingbridge-proxy"
        self.proxy_port = harness.free_port()
        proxy_yaml = agent_env.proxy_config(self.sim.port, "${env:DINGBRIDGE_AGENT_PASSWORD_HASH}")
        proxy_yaml = proxy_yaml.replace('"127.0.0.1:0"', f'"127.0.0.1:{self.proxy_port}"')
        proxy_yaml += '  file: "/var/log/dingbridge/access.log"\n'
        (ETC / "proxy.yaml").write_text(proxy_yaml)
        with open(ETC / "proxy.env", "a") as f:
            f.write(f"DINGBRIDGE_AGENT_PASSWORD_HASH='{harness.hash_password(agent_env.PROXY_PASSWORD)}'\n")
        with open(ETC / "agent.env", "a") as f:
            f.write(f"DINGTALK_APP_SECRET={agent_env.APP_SECRET}\nDINGBRIDGE_PROXY_PASSWORD={agent_env.PROXY_PASSWORD}\n")
        (ETC / "agent.yaml").write_text(f"""dingtalk:
  corp_id: dingsimcorp
  app_key: {agent_env.APP_KEY}
  app_secret: "${{env:DINGTALK_APP_SECRET}}"
  oapi_base_url: "{self.sim.base}"
  ca_file: "{ca}"
  qps: 50
  concurrency: 4
proxy:
  url: "http://127.0.0.1:{self.proxy_port}"
  username: agent
  password: "${{env:DINGBRIDGE_PROXY_PASSWORD}}"
target:
  type: sqlite
mapping: mapping.yaml
safeguard:
  max_deletes: "50%"
state_dir: /var/lib/dingbridge
""")

    def test_install_run_upgrade_purge(self):
        deb1 = pkg.build("DEB", self.dir / "v1")
        version1 = deb1.name.split("_")[1]
        deb2 = pkg.build("DEB", self.dir / "v2", version=version1 + "+rebuild1")

        # --- install
        sh("dpkg", "-i", str(deb1))
        self.assertEqual(installed_version(), version1)
        pwd.getpwnam("dingbridge")
        for name in SECRET_FILES:
            self.assertEqual(owner_mode(ETC / name), "root:dingbridge 0640", name)
        self.assertEqual(owner_mode("/var/lib/dingbridge"), "dingbridge:dingbridge 0750")
        self.assertEqual(owner_mode("/var/log/dingbridge"), "dingbridge:dingbridge 0750")
        for name in ENABLED:  # enabled like a Debian daemon; the timer is not
            self.assertTrue(Path("/etc/systemd/system/multi-user.target.wants", name).is_symlink(), name)
        self.assertFalse(Path("/etc/systemd/system/timers.target.wants/dingbridge-agent-sync.timer").exists())
        self.assertFalse(Path("/etc/systemd/system/multi-user.target.wants/dingbridge-agent-web.service").exists())
        sh("logrotate", "-d", "/etc/logrotate.d/dingbridge")
        listed = sh("dpkg", "-L", "dingbridge").stdout.split()
        for page in ("/usr/share/man/man1/dingbridge-agent.1.gz", "/usr/share/man/man5/dingbridge-proxy.yaml.5.gz",
                     "/usr/share/bash-completion/completions/dingbridge-agent"):
            self.assertIn(page, listed)

        # --- configure and run both services as their units would
        work = self.dir / "sim"
        work.mkdir()
        os.chmod(work, 0o755)
        ca, cert, key = harness.make_ca_and_cert(work)
        os.chmod(ca, 0o644)
        self.sim = agent_env.Sim(work, ca, cert, key, "users=60,departments=12,depth=3,seed=7")
        self.configure(ca)
        check = sh("setpriv", "--reuid=dingbridge", "--regid=dingbridge", "--init-groups", "--",
                   "dingbridge-agent", "-c", "/etc/dingbridge/agent.yaml", "history")  # no secret needed
        self.assertIn("no runs yet", check.stdout)
        proxy = self.start_proxy()
        self.sync_and_compare()
        lines = [json.loads(line) for line in Path("/var/log/dingbridge/access.log").read_text().splitlines()]
        self.assertTrue(any(line.get("tenant") == "dingbridge-agent" and line.get("status") == 200 for line in lines),
                        lines[:3])
        self.assertEqual(owner_mode("/var/log/dingbridge/access.log"), "dingbridge:dingbridge 0640")
        # Root is told to run as the service user instead of leaving root-owned files in the state.
        env = dict(os.environ, **env_file(ETC / "agent.env"))
        p = subprocess.run(["dingbridge-agent", "-c", str(ETC / "agent.yaml"), "sync"], capture_output=True,
                           text=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("runuser -u dingbridge", p.stderr)
        runs = 1
        if not Path("/run/systemd/system").exists():  # with systemd, postrotate signals the units instead
            self.rotate_logs(proxy)
            runs += 1
        self.stop(proxy)

        # --- upgrade with edited configuration: edits and the administrator's mode are kept
        agent_yaml = (ETC / "agent.yaml").read_text()
        proxy_env = (ETC / "proxy.env").read_text()
        os.chown(ETC / "agent.yaml", pwd.getpwnam("dingbridge").pw_uid, grp.getgrnam("dingbridge").gr_gid)
        os.chmod(ETC / "agent.yaml", 0o600)
        sh("dpkg", "-i", str(deb2))
        self.assertEqual(installed_version(), version1 + "+rebuild1")
        self.assertEqual((ETC / "agent.yaml").read_text(), agent_yaml)
        self.assertEqual((ETC / "proxy.env").read_text(), proxy_env)
        self.assertEqual(owner_mode(ETC / "agent.yaml"), "dingbridge:dingbridge 0600")
        self.assertEqual(owner_mode(ETC / "proxy.env"), "root:dingbridge 0640")
        self.assertEqual(owner_mode(ETC / "mapping.yaml"), "root:dingbridge 0640")
        self.assertFalse(list(ETC.glob("*.dpkg-*")), "no conffile prompt leftovers")
        proxy = self.start_proxy()
        second = self.sync_and_compare()
        # The new binaries against the kept state: the same org, nothing to change.
        self.assertIn(f"run {runs + 1}: succeeded", second.stdout)  # the history kept across the upgrade
        self.assertIn("Plan: 0 changes", second.stdout)
        self.stop(proxy)

        # --- purge: configuration, secrets, state, logs, account, statoverrides, unit state
        sh("dpkg", "--purge", "dingbridge")
        self.assertIsNone(installed_version())
        for path in [ETC, Path("/var/lib/dingbridge"), Path("/var/log/dingbridge"), Path("/etc/logrotate.d/dingbridge"),
                     Path("/usr/bin/dingbridge-agent"), Path("/usr/bin/dingbridge-proxy")]:
            self.assertFalse(path.exists(), path)
        for name in ALL_UNITS:
            self.assertFalse(list(Path("/etc/systemd/system").rglob(name)), name)
            self.assertFalse((DSH / (name + ".dsh-also")).exists(), name)
        with self.assertRaises(KeyError):
            pwd.getpwnam("dingbridge")
        with self.assertRaises(KeyError):
            grp.getgrnam("dingbridge")
        self.assertNotIn("/etc/dingbridge", sh("dpkg-statoverride", "--list").stdout)


if __name__ == "__main__":
    unittest.main()
