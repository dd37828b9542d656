"""dingbridge-agent's command line as an administrator meets it: --version, a mistyped command,
`history` without the secrets in the environment, `check-config` checking the host (CA files,
state directory) and `sync` telling a permission problem from a sync that is already running.
No DingTalk call is made by any of these. Parts that need a second user run only as root."""
import fcntl
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

AGENT = os.environ.get("DINGBRIDGE_AGENT", "dingbridge-agent")
PROXY = os.environ.get("DINGBRIDGE_PROXY", "dingbridge-proxy")
REPO = Path(__file__).resolve().parents[2]
OTHER_USER = "nobody"


class AgentCommandLine(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        os.chmod(self.dir, 0o755)
        self.ca, _, _ = harness.make_ca_and_cert(self.dir)
        os.chmod(self.ca, 0o644)
        (self.dir / "mapping.yaml").write_text((REPO / "configs" / "mapping.yaml").read_text())
        os.chmod(self.dir / "mapping.yaml", 0o644)
        self.state = self.dir / "state"
        self.write(ca=self.ca)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, ca, state=None, extra=""):
        self.config = self.dir / "agent.yaml"
        self.config.write_text(f"""dingtalk:
  app_key: key
  app_secret: "${{env:CLI_TEST_SECRET}}"
  ca_file: "{ca}"
proxy:
  url: "http://127.0.0.1:9"
  username: agent
  password: "${{env:CLI_TEST_PROXY_PASSWORD}}"
  ca_file: "{self.ca}"
mapping: mapping.yaml
state_dir: "{state or self.state}"
{extra}""")
        os.chmod(self.config, 0o644)

    def agent(self, *args, user=None, secrets=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLI_TEST_")}
        if secrets:
            env.update(CLI_TEST_SECRET="App-Secret-123456", CLI_TEST_PROXY_PASSWORD="Proxy-Pass-123456")
        cmd = [AGENT, "-c", str(self.config), *args]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    def test_version_of_both_binaries(self):
        for binary, name in ((AGENT, "dingbridge-agent"), (PROXY, "dingbridge-proxy")):
            p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout.strip(), rf"^{name} \d+\.\d+\.\d+")

    def test_unknown_command_is_named(self):
        p = self.agent("synk")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command 'synk'", p.stderr)
        self.assertIn("sync", p.stderr.split("commands:")[1])
        p = self.agent()
        self.assertEqual(p.returncode, 2)
        self.assertIn("a command is required", p.stderr)
        # Usage mistakes exit 2 too (before: CLI11's 104 to 109).
        for args, message in ((("history", "--limit", "0"), "--limit"), (("history", "show", "abc"), "abc"),
                              (("sync", "--bogus"), "--bogus")):
            p = self.agent(*args)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(message, p.stderr)

    def test_history_without_secrets(self):
        p = self.agent("history", secrets=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("no runs yet", p.stdout)
        # sync still needs them, and says which one is missing.
        p = self.agent("sync", "--dry-run", secrets=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("CLI_TEST_SECRET", p.stderr)

    def test_check_config_refuses_bad_ca_files(self):
        self.assertEqual(self.agent("check-config").returncode, 0)
        not_pem = self.dir / "not.pem"
        not_pem.write_text("this is no certificate\n")
        self.write(ca=not_pem)
        p = self.agent("check-config")
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("dingtalk.ca_file: " + str(not_pem), p.stderr)
        broken = self.dir / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        self.write(ca=broken)
        p = self.agent("check-config")
        self.assertEqual(p.returncode, 2)
        self.assertIn("does not parse", p.stderr)
        self.write(ca=self.dir / "missing.pem")
        p = self.agent("check-config")
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing.pem: cannot be read", p.stderr)

    def test_a_log_file_in_a_missing_directory_is_refused_not_created(self):
        # spdlog would create the mistyped directory and log where nobody looks.
        missing = self.dir / "logz"
        self.write(ca=self.ca, extra=f'log:\n  file: "{missing}/agent.log"\n')
        for command in ("check-config", "sync", "history"):
            p = self.agent(command)
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertIn(f"cannot open log file {missing}/agent.log: directory {missing} does not exist", p.stderr)
            self.assertFalse(missing.exists())
        missing.mkdir()
        p = self.agent("check-config")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_sync_tells_a_running_sync_from_a_lock_it_cannot_open(self):
        self.state.mkdir()
        with open(self.state / "agent.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            p = self.agent("sync")
            self.assertEqual(p.returncode, 1)
            self.assertIn("another sync is running", p.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to act as a second user")
    def test_state_dir_permissions_as_the_service_user(self):
        # An unwritable state_dir is named by its key in check-config and in sync.
        self.write(ca=self.ca, state="/var/lib/dingbridge-cli-test-nothere/state")
        p = self.agent("check-config", user=OTHER_USER)
        self.assertEqual(p.returncode, 2)
        self.assertIn("state_dir: /var/lib/dingbridge-cli-test-nothere/state: cannot be created", p.stderr)
        self.assertIn("user nobody", p.stderr)
        # After a sync run as root the lock belongs to root: a permission problem, not "another sync".
        self.write(ca=self.ca)
        self.state.mkdir()
        lock = self.state / "agent.lock"
        lock.touch(mode=0o600)
        os.chown(self.state, 65534, 65534)
        p = self.agent("sync", user=OTHER_USER)
        self.assertEqual(p.returncode, 1)
        self.assertIn("permission problem", p.stderr)
        self.assertIn("agent.lock", p.stderr)
        self.assertNotIn("another sync", p.stderr)
        # And root is stopped before it makes such files in the service user's directory.
        lock.unlink()
        p = self.agent("sync")
        self.assertEqual(p.returncode, 1)
        self.assertIn("runuser -u nobody", p.stderr)
        self.assertFalse(lock.exists())


if __name__ == "__main__":
    unittest.main()
