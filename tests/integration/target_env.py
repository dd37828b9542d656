"""What the tests of the agent's external targets (LDAP: slapd.py, SCIM: scim.py) share: an
agent_env.Env whose agent.yaml `target:` section is swapped for the target's, the server
certificate the test CA signed for the target's server, and a TestCase base that stops every
environment it made.
"""
import unittest

from agent_env import Env


class TargetEnv(Env):
    """Env + one target server. Subclasses start their server in __init__ (after this one) and
    write their section with replace_target(); stop_target() stops the server."""

    def server_cert(self):
        """(certificate, key) for 127.0.0.1/localhost, signed by this env's test CA."""
        return str(self.dir / "server.pem"), str(self.dir / "server.key")

    def replace_target(self, block):
        """Replaces agent.yaml's target section (from `target:` to `mapping:`) with `block`."""
        text = self.config.read_text()
        start = text.index("target:\n")
        end = text.index("mapping:")
        self.config.write_text(text[:start] + block + text[end:])

    def quiet(self):
        """Agent log level warn (benchmarks: no per-request lines)."""
        self.config.write_text(self.config.read_text().replace("level: info", "level: warn"))

    def stop_target(self):
        pass

    def stop(self):
        self.stop_target()
        super().stop()


class TargetCase(unittest.TestCase):
    """A TestCase whose environments are stopped when the test ends (pass or fail)."""

    env_class = None

    def make_env(self, *args, **kw):
        env = self.env_class(*args, **kw)
        self.addCleanup(env.stop)
        return env
