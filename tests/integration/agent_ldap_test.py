"""dingbridge-agent with target.type: ldap against a real slapd (tests/integration/slapd.py)
started on free loopback ports with a test CA, the DingTalk simulator and dingbridge-proxy
(agent_env.py). The directory is compared entry by entry with ldapsearch output.
"""
import os
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slapd as slapd_mod  # noqa: E402
from agent_env import Env, APP_SECRET, PROXY_PASSWORD, expected_org  # noqa: E402
from slapd import SUFFIX, AGENT_DN, AGENT_PW, Slapd  # noqa: E402

DEPTS = "ou=departments," + SUFFIX
PEOPLE = "ou=people," + SUFFIX
DISABLED = "ou=disabled," + SUFFIX


def ldap_block(url, ca, removed="disable", extra=""):
    return f"""target:
  type: ldap
  ldap:
    url: "{url}"
    ca_file: "{ca}"
    bind_dn: "{AGENT_DN}"
    bind_password: "${{env:LDAP_BIND_PASSWORD}}"
    base_dn: "{SUFFIX}"
    page_size: 200
{extra}"""


class LdapEnv(Env):
    def __init__(self, generate, use_ldaps=False, ldap_extra="", **kw):
        super().__init__(generate=generate, **kw)
        self.slapd = Slapd(self.dir, self.ca, *self._server_cert())
        self.env["LDAP_BIND_PASSWORD"] = AGENT_PW
        self.set_target(self.slapd.ldaps_url if use_ldaps else self.slapd.url, ldap_extra)

    def _server_cert(self):
        return str(self.dir / "server.pem"), str(self.dir / "server.key")

    def set_target(self, url, extra=""):
        text = self.config.read_text()
        start = text.index("target:\n")
        end = text.index("mapping:")
        self.config.write_text(text[:start] + ldap_block(url, self.ca, extra=extra) + text[end:])

    def stop(self):
        self.slapd.stop()
        super().stop()


def escape_rdn(v):
    out = ""
    for i, ch in enumerate(v):
        if ch in ',+"\\<>;=' or (i == 0 and ch in " #") or (i == len(v) - 1 and ch == " "):
            out += "\\"
        out += ch
    return out


def expected_directory(org):
    """What the directory must hold for the simulator's org under the default mapping and the
    default target.ldap keys, computed independently of the agent: {dept_id: (dn, description,
    sorted member DNs, sorted owner DNs)}, {userid: (dn, attrs)}."""
    exp = expected_org(org)
    depts, users = exp["departments"], exp["users"]
    dn_of_dept = {}

    def dept_dn(i):
        if i not in dn_of_dept:
            d = depts[i]
            parent = d["parent"]
            base = DEPTS if not parent else dept_dn(parent)
            dn_of_dept[i] = f"ou={escape_rdn(d['name'])},{base}"
        return dn_of_dept[i]

    user_dn = {i: f"uid={escape_rdn(u['username'] or i)},{PEOPLE}" for i, u in users.items()}
    out_users = {}
    for i, u in users.items():
        name = u["display_name"] or i
        attrs = {"uid": [u["username"] or i], "cn": [name], "sn": [name], "displayname": [name], "employeenumber": [i]}
        for attr, field in (("mail", "email"), ("mobile", "phone"), ("title", "title"),
                            ("departmentnumber", "primary")):
            if u[field]:
                attrs[attr] = [u[field]]
        if u["manager"] and u["manager"] in users:
            attrs["manager"] = [user_dn[u["manager"]]]
        out_users[i] = (user_dn[i], attrs)
    out_depts = {}
    for i, d in depts.items():
        members = sorted(user_dn[u] for u, x in users.items() if i in [m[0] for m in x["memberships"]])
        owners = sorted(user_dn[l] for l in d["leaders"] if l in users)
        group = f"cn={escape_rdn(d['name'])},{dept_dn(i)}"
        out_depts[i] = (dept_dn(i), d["description"], members or [group], owners)
    return out_depts, out_users


def actual_directory(s):
    depts, users = {}, {}
    groups = {}
    for dn, a in s.search(DEPTS):
        if "businesscategory" not in a:
            continue
        i = a["businesscategory"][0]
        if "organizationalUnit" in a["objectclass"]:
            depts[i] = (dn, a.get("description", [""])[0])
        else:
            groups[i] = (dn, sorted(a.get("member", [])), sorted(a.get("owner", [])))
    out_depts = {}
    for i, (dn, desc) in depts.items():
        g = groups.get(i, (None, [], []))
        out_depts[i] = (dn, desc, g[1], g[2])
        if g[0] is not None:
            assert g[0].lower().endswith("," + dn.lower()), (g[0], dn)
    for dn, a in s.search(PEOPLE, "(objectClass=inetOrgPerson)"):
        keep = {k: v for k, v in a.items() if k in ("uid", "cn", "sn", "displayname", "employeenumber", "mail",
                                                     "mobile", "title", "departmentnumber", "manager")}
        users[a["employeenumber"][0]] = (dn, keep)
    return out_depts, users


def norm_dn(dn):
    """A DN with its RDN values unescaped (\22 and \" alike) and lower-cased, for comparison."""
    parts, cur, i = [], bytearray(), 0
    raw = dn.encode()
    while i < len(raw):
        c = raw[i]
        if c == 0x5C:  # backslash
            try:
                cur.append(int(raw[i + 1:i + 3], 16))
                i += 3
            except ValueError:
                cur += raw[i + 1:i + 2]
                i += 2
            continue
        if c == 0x2C:  # comma
            parts.append(cur.decode().lower())
            cur = bytearray()
        else:
            cur.append(c)
        i += 1
    parts.append(cur.decode().lower())
    return tuple(parts)


def norm(value, dn=False):
    if isinstance(value, tuple):
        return tuple(norm(v, dn=(k == 0)) for k, v in enumerate(value)) if not dn else value
    if isinstance(value, list):
        return sorted(norm_dn(v) for v in value)
    if isinstance(value, dict):
        return {k: ([norm_dn(x) for x in v] if k == "manager" else v) for k, v in value.items()}
    return norm_dn(value) if dn else value


def diff_directory(want, got):
    want = ({k: norm(v) for k, v in want[0].items()}, {k: norm(v) for k, v in want[1].items()})
    got = ({k: norm(v) for k, v in got[0].items()}, {k: norm(v) for k, v in got[1].items()})
    problems = []
    for kind, w, g in (("department", want[0], got[0]), ("user", want[1], got[1])):
        for i in sorted(set(w) | set(g)):
            if w.get(i) != g.get(i):
                problems.append(f"{kind} {i}: want {w.get(i)} got {g.get(i)}")
    return problems[:10]


class FullSync(unittest.TestCase):
    def test_full_sync_over_starttls_equals_the_org_entry_by_entry_and_resync_writes_nothing(self):
        # 600 users > the server's 500-entry size limit for the agent's (non-root) bind: paging.
        env = LdapEnv("users=600,departments=40,depth=4,seed=11")
        try:
            p = env.agent("sync", check=0)
            self.assertIn("succeeded", p.stdout)
            org = env.sim.org()
            self.assertEqual(diff_directory(expected_directory(org), actual_directory(env.slapd)), [])
            self.assertEqual(len(actual_directory(env.slapd)[1]), len(org["users"]))
            before = env.slapd.search(SUFFIX, "(objectClass=*)", ["entryCSN"])
            env.agent("sync", check=0)
            run = env.history()[0]
            self.assertEqual(run["status"], "succeeded")
            self.assertEqual(run["counts"]["changes_planned"], 0)
            self.assertEqual(env.slapd.search(SUFFIX, "(objectClass=*)", ["entryCSN"]), before)
        finally:
            env.stop()

    def test_ldaps_url_works_and_dry_run_writes_nothing(self):
        env = LdapEnv("users=30,departments=6,depth=2,seed=3", use_ldaps=True)
        try:
            p = env.agent("sync", "--dry-run", check=0)
            self.assertIn("create_user", p.stdout)
            self.assertEqual(env.slapd.search(PEOPLE), [])
            env.agent("sync", check=0)
            self.assertEqual(diff_directory(expected_directory(env.sim.org()), actual_directory(env.slapd)), [])
        finally:
            env.stop()


if __name__ == "__main__":
    unittest.main()
