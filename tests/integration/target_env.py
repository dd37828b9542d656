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


def org_index(org):
    """The simulator's org (Sim.org()) indexed: {dept_id: department}, {parent_id: [child ids]}
    (the root excluded), {dept_id: [member userids]}."""
    depts = {d["dept_id"]: d for d in org["departments"]}
    children, members = {}, {}
    for d in org["departments"]:
        if d["dept_id"] != 1:
            children.setdefault(d["parent_id"], []).append(d["dept_id"])
    for u in org["users"]:
        for d in u["dept_id_list"]:
            members.setdefault(d, []).append(u["userid"])
    return depts, children, members


def remove_leaf_department(sim, org, keep, outside):
    """Moves the members of a leaf department (not the root, not in `keep`, not inside `outside`'s
    subtree) out of it (to their other departments, else the root), then removes it in the
    simulator. Returns the removed department's id."""
    depts, children, members = org_index(org)
    leaf = next(d for d in depts if d != 1 and d not in children and d not in keep
                and not under(depts, d, outside))
    for uid in members.get(leaf, []):
        u = next(x for x in org["users"] if x["userid"] == uid)
        rest = [d for d in u["dept_id_list"] if d != leaf] or [1]
        sim.admin("POST", "/_sim/user/update", {"userid": uid, "dept_id_list": rest})
    sim.admin("POST", "/_sim/dept/remove", {"dept_id": leaf})
    return leaf


def under(depts, d, ancestor):
    """Is department d inside ancestor's subtree (depts as org_index gives it)?"""
    while d and d != 1:
        if d == ancestor:
            return True
        d = depts[d]["parent_id"]
    return False


class TargetCase(unittest.TestCase):
    """A TestCase whose environments are stopped when the test ends (pass or fail)."""

    env_class = None

    def make_env(self, *args, **kw):
        env = self.env_class(*args, **kw)
        self.addCleanup(env.stop)
        return env
