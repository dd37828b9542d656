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
import slapd_names  # noqa: E402
from agent_env import Env, APP_SECRET, PROXY_PASSWORD, expected_org  # noqa: E402
from agent_run_test import RunEnv, department_and_user_changes, some_user  # noqa: E402
from slapd import SUFFIX, AGENT_DN, AGENT_PW, Slapd  # noqa: E402
from target_env import TargetEnv, org_index, remove_leaf_department, under  # noqa: E402

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


class LdapEnv(TargetEnv):
    def __init__(self, generate, use_ldaps=False, ldap_extra="", **kw):
        super().__init__(generate=generate, **kw)
        self.slapd = Slapd(self.dir, self.ca, *self.server_cert())
        self.env["LDAP_BIND_PASSWORD"] = AGENT_PW
        self.set_target(self.slapd.ldaps_url if use_ldaps else self.slapd.url, ldap_extra)

    def set_target(self, url, extra=""):
        self.replace_target(ldap_block(url, self.ca, extra=extra))

    def stop_target(self):
        self.slapd.stop()


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
            pair = raw[i + 1:i + 3]
            if len(pair) == 2 and all(chr(x) in "0123456789abcdefABCDEF" for x in pair):
                cur.append(int(pair, 16))
                i += 3
            else:
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
        self.addCleanup(env.stop)
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

    def test_ldaps_url_works_and_dry_run_writes_nothing(self):
        env = LdapEnv("users=30,departments=6,depth=2,seed=3", use_ldaps=True)
        self.addCleanup(env.stop)
        p = env.agent("sync", "--dry-run", check=0)
        self.assertIn("create_user", p.stdout)
        self.assertEqual(env.slapd.search(PEOPLE), [])
        env.agent("sync", check=0)
        self.assertEqual(diff_directory(expected_directory(env.sim.org()), actual_directory(env.slapd)), [])


def counts(env):
    return env.history()[0]["counts"]


def assert_next_sync_plans_nothing(test, env):
    env.agent("sync", check=0)
    test.assertEqual(counts(env)["changes_planned"], 0)


def assert_converged(test, env):
    """The directory equals the simulator's org entry by entry, and the next sync plans nothing."""
    test.assertEqual(diff_directory(expected_directory(env.sim.org()), actual_directory(env.slapd)), [])
    assert_next_sync_plans_nothing(test, env)


class Mutations(unittest.TestCase):
    def test_every_mutation_kind_converges_and_the_next_run_writes_nothing(self):
        env = LdapEnv("users=150,departments=25,depth=4,seed=5")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        org = env.sim.org()
        self.assertEqual(diff_directory(expected_directory(org), actual_directory(env.slapd)), [])
        depts, children, members = org_index(org)
        # a subtree (a department with children) moves under another branch and is renamed
        inner = next(d for d in children if d != 1 and depts[d]["parent_id"] != 1)
        target_parent = next(d for d in children.get(1, []) if d != inner and d != depts[inner]["parent_id"]
                             and not under(depts, d, inner))
        entries_before = len(env.slapd.search(DEPTS))
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": inner, "parent_id": target_parent,
                                                    "name": "Moved, \"renamed\" +1"})
        # a leaf department is removed after its members moved out
        leaf = remove_leaf_department(env.sim, org, keep=(inner, target_parent), outside=inner)
        # a department leader is renamed (new username -> new DN): members, owners, managers follow
        exp = expected_org(org)
        leader = next(u for u in org["users"] if any(exp["users"][x]["manager"] == u["userid"]
                                                     for x in exp["users"]) and u.get("email")
                      and not u.get("org_email"))
        env.sim.admin("POST", "/_sim/user/update", {"userid": leader["userid"], "email": "renamed.leader@example.com"})
        # a user moves between departments; a user leaves; a user left earlier comes back
        mover = next(u for u in org["users"] if u["userid"] != leader["userid"] and leaf not in u["dept_id_list"])
        env.sim.admin("POST", "/_sim/user/update", {"userid": mover["userid"], "dept_id_list": [target_parent]})
        leaver = next(u for u in org["users"] if u["userid"] not in (leader["userid"], mover["userid"])
                      and leaf not in u["dept_id_list"])
        env.sim.admin("POST", "/_sim/user/remove", {"userid": leaver["userid"]})
        env.agent("sync", check=0)
        org2 = env.sim.org()
        self.assertEqual(diff_directory(expected_directory(org2), actual_directory(env.slapd)), [])
        c = counts(env)
        self.assertEqual(c["disable_user"], 1)
        self.assertEqual(c["delete_department"], 1)
        self.assertEqual(c["items_failed"], 0)
        # the leaver is disabled: out of ou=people and of every group, kept in ou=disabled
        gone = env.slapd.search(DISABLED, f"(employeeNumber={leaver['userid']})")
        self.assertEqual(len(gone), 1)
        self.assertEqual(env.slapd.search(DEPTS, f"(member={gone[0][0]})"), [])
        # the move was a modrdn: the subtree kept its entries (one department less: the removed leaf)
        self.assertEqual(len(env.slapd.search(DEPTS)), entries_before - 2)
        assert_next_sync_plans_nothing(self, env)

        # re-join: the leaver is back with the same userid
        env.sim.admin("POST", "/_sim/user/create", {"userid": leaver["userid"], "name": leaver["name"],
                                                    "dept_id_list": [1], "email": leaver.get("email", "")})
        env.agent("sync", check=0)
        self.assertEqual(counts(env)["create_user"], 1)
        self.assertEqual(env.slapd.search(DISABLED, "(objectClass=inetOrgPerson)"), [])
        assert_converged(self, env)

    def test_a_member_value_left_by_an_interrupted_rename_is_removed(self):
        env = LdapEnv("users=20,departments=4,depth=2,seed=2")
        self.addCleanup(env.stop)
        env.agent("sync", check=0)
        group = env.slapd.search(DEPTS, "(objectClass=groupOfNames)", ["member"])[0][0]
        ghost = f"uid=ghost,{PEOPLE}"
        env.slapd.modify(f"dn: {group}\nchangetype: modify\nadd: member\nmember: {ghost}\n")
        env.agent("sync", check=0)
        self.assertEqual(counts(env)["update_department"], 1)
        self.assertEqual(env.slapd.search(DEPTS, f"(member={ghost})"), [])
        assert_converged(self, env)

    def test_empty_department_keeps_a_placeholder_member(self):
        env = LdapEnv("users=20,departments=4,depth=2,seed=2")
        self.addCleanup(env.stop)
        env.sim.admin("POST", "/_sim/dept/create", {"name": "Empty", "parent_id": 1, "order": 1})
        env.agent("sync", check=0)
        g = env.slapd.search(DEPTS, "(&(objectClass=groupOfNames)(cn=Empty))", ["member"])
        self.assertEqual(len(g), 1)
        self.assertEqual(g[0][1]["member"], [g[0][0]])  # its own DN
        assert_next_sync_plans_nothing(self, env)


    def test_an_empty_department_renamed_or_moved_with_its_parent_keeps_its_own_dn_as_member(self):
        # the placeholder member of an empty group is the group's own DN: after a rename of the
        # department, or of its parent (the subtree moves), it must name the new DN
        env = LdapEnv("users=20,departments=4,depth=2,seed=2")
        self.addCleanup(env.stop)
        parent = env.sim.admin("POST", "/_sim/dept/create", {"name": "Parent", "parent_id": 1})["dept_id"]
        env.sim.admin("POST", "/_sim/user/create", {"userid": "p-1", "name": "P", "dept_id_list": [parent]})
        empty = env.sim.admin("POST", "/_sim/dept/create", {"name": "Empty", "parent_id": parent})["dept_id"]
        env.agent("sync", check=0)
        assert_converged(self, env)
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": parent, "name": "Parent renamed"})
        env.agent("sync", check=0)
        assert_converged(self, env)
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": empty, "name": "Empty renamed"})
        env.agent("sync", check=0)
        g = env.slapd.search(DEPTS, f"(&(objectClass=groupOfNames)(businessCategory={empty}))", ["member"])
        self.assertEqual([norm_dn(m) for m in g[0][1]["member"]], [norm_dn(g[0][0])])
        assert_converged(self, env)

    def test_a_rename_that_changes_only_the_case_is_carried_out(self):
        # Before: DNs were compared ignoring case, so "Sales team" -> "SALES TEAM" was reported as
        # applied on every run while the directory kept the old name.
        env = LdapEnv("users=20,departments=3,depth=1,seed=2")
        self.addCleanup(env.stop)
        dept = env.sim.admin("POST", "/_sim/dept/create", {"name": "Sales team", "parent_id": 1})["dept_id"]
        env.sim.admin("POST", "/_sim/user/create", {"userid": "case-1", "name": "C", "dept_id_list": [dept]})
        env.agent("sync", check=0)
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": dept, "name": "SALES TEAM"})
        env.agent("sync", check=0)
        self.assertEqual(counts(env)["update_department"], 1)
        found = env.slapd.search(DEPTS, f"(businessCategory={dept})", ["ou", "cn"])
        self.assertEqual(sorted(dn.split(",")[0] for dn, _ in found), ["cn=SALES TEAM", "ou=SALES TEAM"], found)
        assert_converged(self, env)


class Faults(unittest.TestCase):
    def test_slapd_stopped_mid_run_ends_partial_and_the_rerun_converges(self):
        env = LdapEnv("users=2500,departments=60,depth=4,seed=21")
        self.addCleanup(env.stop)
        import subprocess
        proc = subprocess.Popen([os.environ.get("DINGBRIDGE_AGENT", "dingbridge-agent"), "-c", str(env.config),
                                 "sync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            got = env.slapd.search(PEOPLE, "(objectClass=inetOrgPerson)", ["1.1"])
            if len(got) > 200:
                break
            time.sleep(0.05)
        env.slapd.stop()
        out, err = proc.communicate(timeout=240)
        self.assertEqual(proc.returncode, 3, out)  # partial
        run = env.history()[0]
        self.assertEqual(run["status"], "partial", run["message"] + out)
        detail = env.run_detail(run["id"])
        self.assertGreater(len(detail["items"]), 0)
        self.assertTrue(any("Can't contact LDAP server" in i["error"] or "connect failed" in i["error"]
                            for i in detail["items"]), detail["items"][:3])
        env.slapd.start()
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["status"], "succeeded")
        assert_converged(self, env)

    def test_agent_killed_mid_run_then_rerun_converges_without_duplicates(self):
        env = LdapEnv("users=2500,departments=60,depth=4,seed=22")
        self.addCleanup(env.stop)
        import signal
        import subprocess
        proc = subprocess.Popen([os.environ.get("DINGBRIDGE_AGENT", "dingbridge-agent"), "-c", str(env.config),
                                 "sync"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(env.slapd.search(PEOPLE, "(objectClass=inetOrgPerson)", ["1.1"])) > 300:
                break
            time.sleep(0.05)
        self.assertIsNone(proc.poll(), "the sync finished before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["status"], "succeeded")
        people = env.slapd.search(PEOPLE, "(objectClass=inetOrgPerson)", ["employeeNumber"])
        ids = [a["employeenumber"][0] for _, a in people]
        self.assertEqual(len(ids), len(set(ids)))
        assert_converged(self, env)

    def test_a_value_the_schema_refuses_fails_one_user_and_the_run_goes_on(self):
        env = LdapEnv("users=40,departments=6,depth=2,seed=4")
        self.addCleanup(env.stop)
        org = env.sim.org()
        victim = next(u for u in org["users"] if u.get("email") and not u.get("org_email"))
        # mail is an IA5String: a non-ASCII address is refused by the server's schema
        env.sim.admin("POST", "/_sim/user/update", {"userid": victim["userid"], "email": "jürgen@example.com"})
        p = env.agent("sync", check=None)
        run = env.history()[0]
        self.assertEqual(run["status"], "partial", p.stdout)
        self.assertEqual(run["counts"]["items_failed"], 1)
        items = env.run_detail(run["id"])["items"]
        self.assertEqual([i["external_id"] for i in items], [victim["userid"]])
        self.assertIn("syntax", items[0]["error"].lower())
        self.assertEqual(len(actual_directory(env.slapd)[1]), len(org["users"]) - 1)
        env.sim.admin("POST", "/_sim/user/update", {"userid": victim["userid"], "email": "jurgen@example.com"})
        env.agent("sync", check=0)
        self.assertEqual(diff_directory(expected_directory(env.sim.org()), actual_directory(env.slapd)), [])

    def test_two_dingtalk_users_with_one_username_the_second_gets_its_userid_as_uid(self):
        # Before: the user whose username clear_field emptied was never created ("the user has
        # no value for the RDN attribute uid"), on every run.
        env = LdapEnv("users=20,departments=3,depth=1,seed=8")
        self.addCleanup(env.stop)
        a, b = sorted(u["userid"] for u in env.sim.org()["users"])[:2]
        for userid, domain in ((a, "a"), (b, "b")):
            env.sim.admin("POST", "/_sim/user/update", {"userid": userid, "email": f"bob@{domain}.example.com",
                                                        "org_email": ""})
        p = env.agent("sync", check=0)
        uids = {}
        for userid in (a, b):
            found = env.slapd.search(PEOPLE, f"(employeeNumber={userid})", ["uid"])
            self.assertEqual(len(found), 1, p.stdout)
            uids[userid] = found[0][1]["uid"]
        self.assertEqual(sorted(uids.values()), sorted([["bob"], [a if uids[b] == ["bob"] else b]]), uids)
        assert_next_sync_plans_nothing(self, env)
        # Two users swap usernames: one gives its name up first (written with its userid for
        # that step, as a username cannot be empty in a DN), then both take their new ones.
        for step in ((("carol", a), ("bob", b)), (("bob", a), ("carol", b))):
            for name, userid in step:
                env.sim.admin("POST", "/_sim/user/update", {"userid": userid, "email": f"{name}@x.example.com"})
            p = env.agent("sync", check=0)
            for name, userid in step:
                found = env.slapd.search(PEOPLE, f"(employeeNumber={userid})", ["uid"])
                self.assertEqual([f[1]["uid"] for f in found], [[name]], p.stdout)
            assert_next_sync_plans_nothing(self, env)

    def test_a_user_leaving_with_the_username_of_one_who_left_before_is_disabled(self):
        # A leaves (uid=alice moves to ou=disabled), B later gets the username alice and leaves
        # too. Before: moving B failed with "Already exists" on every run, after its memberships
        # were removed: B stayed active in ou=people, where a login service still finds it.
        env = LdapEnv("users=12,departments=3,depth=1,seed=8")
        self.addCleanup(env.stop)
        a, b = sorted(u["userid"] for u in env.sim.org()["users"])[:2]
        entry = lambda userid: [dn for dn, _ in env.slapd.search(SUFFIX, f"(employeeNumber={userid})", ["uid"])]
        env.sim.admin("POST", "/_sim/user/update", {"userid": a, "email": "alice@x.example.com", "org_email": ""})
        env.agent("sync", check=0)
        env.sim.admin("POST", "/_sim/user/remove", {"userid": a})
        env.agent("sync", check=0)
        self.assertEqual(entry(a), [f"uid=alice,{DISABLED}"])
        env.sim.admin("POST", "/_sim/user/update", {"userid": b, "email": "alice@x.example.com", "org_email": ""})
        env.agent("sync", check=0)
        self.assertEqual(entry(b), [f"uid=alice,{PEOPLE}"])
        env.sim.admin("POST", "/_sim/user/remove", {"userid": b})
        p = env.agent("sync", check=None)
        self.assertEqual(env.history()[0]["status"], "succeeded", p.stdout + p.stderr)
        self.assertEqual(entry(b), [f"uid=alice ({b}),{DISABLED}"])
        self.assertEqual(entry(a), [f"uid=alice,{DISABLED}"])
        assert_next_sync_plans_nothing(self, env)
        # B comes back: its old name again, in ou=people.
        env.sim.admin("POST", "/_sim/user/create", {"userid": b, "name": "B again", "email": "alice@x.example.com",
                                                    "org_email": "", "dept_id_list": [1]})
        env.agent("sync", check=0)
        self.assertEqual(entry(b), [f"uid=alice,{PEOPLE}"])
        self.assertEqual(env.slapd.search(f"uid=alice,{PEOPLE}", scope="base")[0][1]["uid"], ["alice"])
        assert_next_sync_plans_nothing(self, env)

    def test_managers_and_owners_name_the_entry_the_plan_writes(self):
        # Before: manager and owner values used the DN of the username DingTalk gives, computed
        # before the plan settled conflicts. A leader whose username another user holds (written
        # as uid=<userid>) was named by the other user's DN in its reports' manager and its
        # group's owner, and every run planned the same changes again; a manager whose own entry
        # could not be written (a stranger's entry at its DN) was named by the stranger's DN.
        env = LdapEnv("users=20,departments=3,depth=1,seed=8")
        self.addCleanup(env.stop)
        a, b, c = sorted(u["userid"] for u in env.sim.org()["users"] if 1 in u["dept_id_list"])[:3]
        for userid, domain in ((a, "a"), (b, "b")):
            env.sim.admin("POST", "/_sim/user/update", {"userid": userid, "email": f"bob@{domain}.example.com",
                                                        "org_email": ""})
        env.sim.admin("POST", "/_sim/user/update", {"userid": b, "leader_in_dept": [{"dept_id": 1, "leader": True}]})

        def references():
            dn_of, manager_of = {}, {}
            for dn, at in env.slapd.search(PEOPLE, "(objectClass=inetOrgPerson)", ["employeeNumber", "manager"]):
                if at.get("employeenumber"):
                    dn_of[at["employeenumber"][0]] = dn.lower()
                    manager_of[at["employeenumber"][0]] = [m.lower() for m in at.get("manager", [])]
            owners = [o.lower() for _, at in env.slapd.search(
                DEPTS, "(&(objectClass=groupOfNames)(businessCategory=1))", ["owner"]) for o in at.get("owner", [])]
            return dn_of, manager_of, owners

        env.agent("sync", check=0)
        dn_of, manager_of, owners = references()
        self.assertEqual(dn_of[b], f"uid={b},{PEOPLE}".lower())
        reports = [i for i, u in expected_org(env.sim.org())["users"].items() if u["manager"] == b]
        self.assertTrue(reports)
        self.assertEqual({i: manager_of[i] for i in reports}, {i: [dn_of[b]] for i in reports})
        self.assertEqual(owners, [dn_of[b]])
        assert_next_sync_plans_nothing(self, env)

        # A stranger's entry where the new leader's entry would go: the leader's rename fails (as
        # documented), and its reports' manager and its group's owner never name the stranger.
        env.sim.admin("POST", "/_sim/user/update", {"userid": c, "email": "carol@x.example.com", "org_email": ""})
        env.sim.admin("POST", "/_sim/user/update", {"userid": b, "leader_in_dept": [{"dept_id": 1, "leader": False}]})
        env.sim.admin("POST", "/_sim/user/update", {"userid": c, "leader_in_dept": [{"dept_id": 1, "leader": True}]})
        stranger = f"uid=carol,{PEOPLE}"
        env.slapd.modify(f"dn: {stranger}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: Someone Else\n"
                         f"sn: Else\nuid: carol\n")
        env.agent("sync", check=None)
        self.assertEqual(env.history()[0]["status"], "partial")
        _, manager_of, owners = references()
        self.assertNotIn(stranger.lower(), [m for ms in manager_of.values() for m in ms])
        self.assertNotIn(stranger.lower(), owners)
        # The stranger's entry gone, the leader takes its name and every reference follows.
        env.slapd.modify(f"dn: {stranger}\nchangetype: delete\n")
        env.agent("sync", check=0)
        dn_of, manager_of, owners = references()
        self.assertEqual(dn_of[c], stranger.lower())
        reports = [i for i, u in expected_org(env.sim.org())["users"].items() if u["manager"] == c]
        self.assertTrue(reports)
        self.assertEqual({i: manager_of[i] for i in reports}, {i: [dn_of[c]] for i in reports})
        self.assertEqual(owners, [dn_of[c]])
        assert_next_sync_plans_nothing(self, env)

    def test_names_the_directory_holds_equal_all_land(self):
        # uid and ou match ignoring case, width and spaces (RFC 4518). Before: of two DingTalk
        # users named bob and Bob, or two sibling departments "Sales team" and "sales　team", the
        # second failed with "Already exists" on every run (the plan compared exact strings).
        env = LdapEnv("users=20,departments=3,depth=1,seed=8")
        self.addCleanup(env.stop)
        a, b = sorted(u["userid"] for u in env.sim.org()["users"])[:2]
        for userid, name in ((a, "bob@a.example.com"), (b, "Bob@b.example.com")):
            env.sim.admin("POST", "/_sim/user/update", {"userid": userid, "email": name, "org_email": ""})
        # 1100-1200: one name in slapd after NFKC (half-width ka + voiced mark, and ga); before
        # utf8proc the second failed with "Already exists" on every run. 1300-1400: two names in
        # slapd (a soft hyphen is kept); before, the second got a needless " (1400)".
        names = {150: "Ops", 200: "Sales team", 1000: "sales\u3000team", 500: "Dup", 600: "dup", 700: "dup (600)",
                 800: "ＩＴ部", 900: "IT部", 1100: "\uff76\uff9e部", 1200: "\u30ac部", 1300: "a\u00adb", 1400: "ab"}
        for dept_id, name in names.items():
            env.sim.admin("POST", "/_sim/dept/create", {"dept_id": dept_id, "name": name, "parent_id": 1})

        def ou(dept_id):
            found = env.slapd.search(DEPTS, f"(&(objectClass=organizationalUnit)(businessCategory={dept_id}))",
                                     ["ou"])
            self.assertEqual(len(found), 1, (dept_id, found))
            return found[0][1]["ou"][0]

        def synced(what):
            p = env.agent("sync", check=None)
            self.assertEqual(env.history()[0]["status"], "succeeded", what + "\n" + p.stdout)
            assert_next_sync_plans_nothing(self, env)

        synced("first sync")
        uids = [env.slapd.search(PEOPLE, f"(employeeNumber={u})", ["uid"])[0][1]["uid"][0] for u in (a, b)]
        self.assertEqual(uids, ["bob", b], "the second holder of a name gets its userid (clear_field)")
        self.assertEqual({d: ou(d) for d in names},
                         {150: "Ops", 200: "Sales team", 1000: "sales\u3000team (1000)", 500: "Dup",
                          600: "dup (600) (600)", 700: "dup (600)", 800: "ＩＴ部", 900: "IT部 (900)",
                          1100: "\uff76\uff9e部", 1200: "\u30ac部 (1200)", 1300: "a\u00adb", 1400: "ab"})
        # A department renamed to a name another one holds: the holder keeps its DN, whatever the ids.
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 150, "name": "SALES TEAM"})
        synced("a rename onto a held name")
        self.assertEqual((ou(150), ou(200)), ("SALES TEAM (150)", "Sales team"))
        # The holder lets the name go: the next in line takes it in the run after (changes are
        # applied one by one; "1000" sorts before "200").
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 200, "name": "Marketing"})
        env.sim.admin("POST", "/_sim/dept/remove", {"dept_id": 150})
        env.agent("sync", check=0)
        self.assertEqual((ou(200), ou(1000)), ("Marketing", "sales\u3000team (1000)"))
        synced("the name handed over")
        self.assertEqual(ou(1000), "sales\u3000team")
        # Two departments swap names: each takes the other's in the run after. Before: each
        # change waited for the other's, on every run.
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 500, "name": "Marketing"})
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 200, "name": "Dup"})
        env.agent("sync", check=0)
        synced("names swapped")
        self.assertEqual((ou(200), ou(500)), ("Dup", "Marketing"))
        # A department replaced by a new one of the same name that takes over its child. Before:
        # the create, the move and the removal waited for one another, on every run.
        env.sim.admin("POST", "/_sim/dept/create", {"dept_id": 930, "name": "Ops", "parent_id": 1})
        env.sim.admin("POST", "/_sim/dept/create", {"dept_id": 931, "name": "Child", "parent_id": 930})
        synced("a department with a child")
        env.sim.admin("POST", "/_sim/dept/create", {"dept_id": 940, "name": "OPS", "parent_id": 1})
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 931, "parent_id": 940})
        env.sim.admin("POST", "/_sim/dept/remove", {"dept_id": 930})
        env.agent("sync", check=0)
        self.assertEqual(env.history()[0]["status"], "succeeded")
        synced("a department replaced")
        self.assertEqual(ou(940), "OPS")
        child = env.slapd.search(DEPTS, "(&(objectClass=organizationalUnit)(businessCategory=931))", ["ou"])
        self.assertTrue(child[0][0].lower().startswith("ou=child,ou=ops,"), child)

    def test_an_entry_someone_else_owns_at_the_users_dn_is_reported_not_overwritten(self):
        env = LdapEnv("users=20,departments=3,depth=1,seed=8")
        self.addCleanup(env.stop)
        org = expected_org(env.sim.org())
        uid, u = next(iter(sorted(org["users"].items())))
        env.agent("sync", "--dry-run", check=0)  # nothing written, the containers do not exist yet
        env.slapd.modify(f"dn: {PEOPLE}\nchangetype: add\nobjectClass: organizationalUnit\nou: people\n\n"
                         f"dn: uid={u['username']},{PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\n"
                         f"cn: someone\nsn: else\nuid: {u['username']}\n")
        env.agent("sync", check=None)
        run = env.history()[0]
        self.assertEqual(run["status"], "partial")
        items = env.run_detail(run["id"])["items"]
        self.assertEqual([i["external_id"] for i in items], [uid])
        self.assertIn("already exists and is not user", items[0]["error"])
        other = env.slapd.search(f"uid={u['username']},{PEOPLE}", scope="base")
        self.assertEqual(other[0][1]["cn"], ["someone"])


class NameMatching(unittest.TestCase):
    def test_no_pair_of_names_slapd_holds_as_one_has_two_keys(self):
        # Each such pair is a department whose write fails with "Already exists" on every run.
        # Before utf8proc, 4,653 of the 8,956 pairs probed (e.g. "①" and "1", "ｶﾞ" and "ガ",
        # "é" and "e" + U+0301, "Ա" and "ա").
        n, apart, together = slapd_names.probe(os.environ.get("DINGBRIDGE_MATCH_KEY", "build/tests/unit/match-key"))
        self.assertGreater(n, 8000)
        self.assertEqual(apart, [], f"{len(apart)} of {n} pairs")


class Doctor(unittest.TestCase):
    def test_online_check_names_the_failing_step(self):
        env = LdapEnv("users=10,departments=2,depth=1,seed=1")
        self.addCleanup(env.stop)
        p = env.agent("check-config", "--online", check=0)
        for step in ("ldap connect: ok", "ldap TLS: ok", "ldap bind: ok", "ldap base DN: ok", "ldap schema: ok"):
            self.assertIn(step, p.stdout)
        # nothing listening
        env.set_target(f"ldap://127.0.0.1:{slapd_mod.free_port()}")
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("ldap connect: FAIL", p.stdout)
        # a CA that did not sign the server's certificate
        import harness
        other = env.dir / "other"
        other.mkdir()
        other_ca = harness.make_ca_and_cert(other)[0]
        for url in (env.slapd.url, env.slapd.ldaps_url):
            text = env.config.read_text()
            env.set_target(url)
            env.config.write_text(env.config.read_text().replace(f'ca_file: "{env.ca}"\n    bind_dn',
                                                                 f'ca_file: "{other_ca}"\n    bind_dn'))
            p = env.agent("check-config", "--online", check=1)
            self.assertIn("ldap TLS: FAIL", p.stdout, url)
        # wrong password
        env.set_target(env.slapd.url)
        env.env["LDAP_BIND_PASSWORD"] = "wrong-password-1234"
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("ldap bind: FAIL", p.stdout)
        self.assertIn("Invalid credentials", p.stdout)
        env.env["LDAP_BIND_PASSWORD"] = AGENT_PW
        # missing base DN
        env.config.write_text(env.config.read_text().replace(f'base_dn: "{SUFFIX}"', 'base_dn: "ou=nowhere,dc=example,dc=com"'))
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("ldap base DN: FAIL", p.stdout)
        # an attribute the schema does not have
        env.set_target(env.slapd.url, extra='    user_attributes: ["uid=username", "cn=display_name", '
                                            '"sn=display_name", "employeeID=employee_number"]\n')
        p = env.agent("check-config", "--online", check=1)
        self.assertIn("ldap schema: FAIL", p.stdout)
        self.assertIn("attribute employeeID", p.stdout)


class Secrets(unittest.TestCase):
    def test_the_bind_password_appears_in_no_output_log_or_history(self):
        env = LdapEnv("users=30,departments=4,depth=2,seed=6")
        self.addCleanup(env.stop)
        log = env.dir / "agent.log"
        text = env.config.read_text().replace("log:\n  level: info\n", f'log:\n  level: trace\n  file: "{log}"\n')
        env.config.write_text(text)
        outputs = []
        for args in (("sync",), ("sync", "--dry-run"), ("check-config", "--online"), ("history", "--json")):
            p = env.agent(*args, check=None)
            outputs += [p.stdout, p.stderr]
        env.slapd.stop()  # failures quote the server and the URL, never the password
        p = env.agent("sync", check=None)
        outputs += [p.stdout, p.stderr]
        for r in env.history():
            outputs.append(str(env.run_detail(r["id"])))
        outputs.append(log.read_text())
        outputs.append((env.state / "state.db").read_bytes().decode("latin-1"))
        for o in outputs:
            self.assertNotIn(AGENT_PW, o)
        self.assertIn("cn=agent", "".join(outputs))  # the bind DN is fine to show


class Config(unittest.TestCase):
    def test_mistakes_in_target_ldap_are_reported_with_file_and_line(self):
        env = LdapEnv("users=5,departments=1,depth=1,seed=1")
        self.addCleanup(env.stop)
        good = env.config.read_text()
        cases = [
            ('    page_size: 200\n', '    page_size: 200\n    user_attributes: ["uid=username", "mail=emial"]\n',
             'unknown field "emial"'),
            ('    page_size: 200\n', '    page_size: 200\n    user_attributes: ["cn=display_name"]\n',
             "user_rdn_attribute uid must be one of user_attributes"),
            # Before: accepted, and of two users named alike the second was never created.
            ('    page_size: 200\n', '    page_size: 200\n    user_rdn_attribute: cn\n',
             "user_rdn_attribute cn is mapped to display_name, which two users may share"),
            ('    page_size: 200\n', '    page_size: 200\n    group_class: posixGroup\n',
             "must be groupOfNames, groupOfUniqueNames or none"),
            (f'url: "{env.slapd.url}"', 'url: "http://127.0.0.1:1"', "must start with ldap://"),
            ('    page_size: 200\n', '    page_size: 200\n    bogus: 1\n', "bogus"),
        ]
        for old, new, message in cases:
            env.config.write_text(good.replace(old, new))
            p = env.agent("check-config", check=2)
            self.assertIn(message, p.stderr)
            self.assertRegex(p.stderr, r"agent\.yaml:\d+")

    def test_the_shipped_ldap_example_loads(self):
        import subprocess
        from agent_env import AGENT_BIN, REPO
        env = dict(os.environ, DINGTALK_APP_SECRET="x" * 16, DINGBRIDGE_PROXY_PASSWORD="y" * 16,
                   LDAP_BIND_PASSWORD="z" * 16)
        p = subprocess.run([AGENT_BIN, "-c", str(REPO / "configs" / "agent-ldap.yaml"), "check-config"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration: ok", p.stdout)

    def test_run_without_groups_is_refused(self):
        # group_class none: the directory holds no memberships, which run mode reads back
        env = LdapEnv("users=5,departments=1,depth=1,seed=1", ldap_extra="    group_class: none\n")
        self.addCleanup(env.stop)
        p = env.agent("run", check=2)
        self.assertIn("group_class", p.stderr)
        self.assertEqual(env.slapd.search(PEOPLE), [])
        env.agent("sync", check=0)  # a scheduled sync works
        self.assertEqual(len(actual_directory(env.slapd)[1]), len(env.sim.org()["users"]))

    def test_plaintext_ldap_without_starttls_is_refused_at_load(self):
        env = LdapEnv("users=5,departments=1,depth=1,seed=1", ldap_extra="    start_tls: false\n")
        self.addCleanup(env.stop)
        p = env.agent("check-config", check=2)
        self.assertIn("start_tls", p.stderr)
        self.assertIn("in clear", p.stderr)



def owner_order_diff(org, s):
    """Departments whose group's owner values are not the leaders' DNs in DingTalk's order (the
    order managers are derived from when the agent runs on events)."""
    exp = expected_org(org)
    users = exp["users"]
    user_dn = {i: f"uid={escape_rdn(u['username'] or i)},{PEOPLE}" for i, u in users.items()}
    want = {i: [norm_dn(user_dn[x]) for x in d["leaders"] if x in users] for i, d in exp["departments"].items()}
    got = {}
    for _, a in s.search(DEPTS, "(objectClass=groupOfNames)", ["businessCategory", "owner"]):
        if "businesscategory" in a:
            got[a["businesscategory"][0]] = [norm_dn(o) for o in a.get("owner", [])]
    return [f"owners of {i}: want {want.get(i)} got {got.get(i)}" for i in sorted(set(want) | set(got))
            if want.get(i) != got.get(i)][:10]


class LdapRunEnv(LdapEnv, RunEnv):
    """`dingbridge-agent run` (stream events: agent_run_test.RunEnv) with the LDAP target."""

    def __init__(self, generate, primary_attribute=True, **kw):
        extra = "" if primary_attribute else (
            '    user_attributes: ["uid=username", "cn=display_name", "sn=display_name", '
            '"displayName=display_name", "mail=email", "mobile=phone", "title=title"]\n')
        super().__init__(generate, ldap_extra=extra, **kw)
        self.primary_attribute = primary_attribute

    def problems(self):
        org = self.sim.org()
        want = expected_directory(org)
        if not self.primary_attribute:
            for _, attrs in want[1].values():
                attrs.pop("departmentnumber", None)
        return diff_directory(want, actual_directory(self.slapd)) + owner_order_diff(org, self.slapd)

    def converged(self):
        return self.problems() == []

    def wait_converged(self, what, timeout=60):
        """The directory equals a full sync's result, and still does once every event was applied
        (a later write of the same batch must not undo it)."""
        try:
            self.wait(self.converged, what, timeout)
            self.wait_events_done()
        except AssertionError as e:
            raise AssertionError(f"{what}: the directory differs from what a full sync writes:\n" +
                                 "\n".join(self.problems()) + f"\n{e}") from None
        problems = self.problems()
        if problems:
            raise AssertionError(f"{what}: once every event was applied, the directory differs from what a full "
                                 "sync writes:\n" + "\n".join(problems) + "\nagent log:\n" + self.agent_log()[-4000:])

    def wait_events_done(self):
        """Every event the simulator sent was delivered and its journal row applied."""
        self.wait(lambda: self.sim.admin("GET", "/_sim/events")["stream"]["pending"] == 0
                  and {s for _, _, s in self.journal()} <= {"done"}, "every event applied")

    def stop(self):
        self.stop_agent()  # before slapd
        super().stop()


def department_gets(env):
    return env.sim.stats()["apis"].get("/topapi/v2/department/get", {}).get("calls", 0)


def make_multi_leader_org(test, env):
    """Makes the generated org exercise what run mode must read back from the directory: a
    department with two leaders whose DingTalk order is not their userids' order, and a user in
    two departments whose primary one is not the lowest id (its manager comes from the primary
    one's first leader). Returns (department, [leaders in DingTalk order], that user's id)."""
    org = env.sim.org()
    depts, children, members = org_index(org)
    exp = expected_org(org)
    led = {x for d in org["departments"] for x in d.get("dept_manager_userid_list", [])}
    # the non-root department with the most single-department members who lead nothing
    plain = lambda d: [u for u in members.get(d, []) if u not in led and len(exp["users"][u]["memberships"]) == 1]
    dept = max((d for d in depts if d != 1), key=lambda d: (len(plain(d)), d))
    candidates = sorted(plain(dept))
    test.assertGreaterEqual(len(candidates), 4, "the generated org has no department big enough")
    first, second = candidates[-1], candidates[0]  # DingTalk order: the larger userid first
    for uid, order in ((first, -20), (second, -10)):  # before every generated member (orders >= 0)
        env.sim.admin("POST", "/_sim/user/update", {"userid": uid, "dept_order_list": [{"dept_id": dept, "order": order}],
                                                    "leader_in_dept": [{"dept_id": dept, "leader": True}]})
    # a member of `dept` also joins a department with a lower id; `dept` stays its primary
    lower_dept = max((d for d in depts if str(d) < str(dept)), key=lambda d: str(d))
    multi = candidates[1]
    env.sim.admin("POST", "/_sim/user/update", {"userid": multi, "dept_id_list": [dept, lower_dept]})
    org = env.sim.org()
    exp = expected_org(org)
    leaders = exp["departments"][str(dept)]["leaders"]
    test.assertEqual(leaders[:2], [first, second])
    test.assertNotEqual(leaders, sorted(leaders))
    test.assertEqual(exp["users"][multi]["primary"], str(dept))
    test.assertEqual(exp["users"][multi]["manager"], first)
    test.assertNotEqual(exp["users"][multi]["primary"], min(m[0] for m in exp["users"][multi]["memberships"]))
    return dept, leaders, multi


class Events(unittest.TestCase):
    """`dingbridge-agent run` with the LDAP target: every kind of change arrives as a stream event.
    The agent builds the wanted org from the directory read back (Target::read()) patched with the
    objects the event names, so the users an event does not name keep their manager and primary
    department only if the directory gives back the departments' leaders in DingTalk's order and
    which membership is primary. After each step the directory must hold exactly what a full sync
    writes (every OU and group with parent, members and owners in DingTalk's order, every user
    with manager and departmentNumber), no event costs a department/get it does not need, and a
    full sync at the end writes nothing."""

    def run_events(self, env):
        dept, leaders, multi = make_multi_leader_org(self, env)
        env.start_agent()
        env.wait_first_full_sync()
        env.wait_connected()
        env.wait_converged("after the first full sync")
        # A leader's title changes: the directory's leader flags match DingTalk's, so no
        # department/get is needed (a leader flag read back wrongly costs one), and the
        # department's other members keep the first leader as their manager.
        env.sim.admin("POST", "/_sim/stats/reset")
        env.sim.admin("POST", "/_sim/user/update", {"userid": leaders[1], "title": "第二负责人"})
        env.wait_converged("a leader's title changed")
        self.assertEqual(department_gets(env), 0, env.sim.stats()["apis"])
        # The multi-department user changes: its primary department and manager stay.
        env.sim.admin("POST", "/_sim/user/update", {"userid": multi, "title": "两个部门"})
        env.wait_converged("a multi-department user changed")
        self.assertEqual(department_gets(env), 0, env.sim.stats()["apis"])

        others = [d["dept_id"] for d in env.sim.org()["departments"] if d["dept_id"] not in (1, dept)]
        new_dept = department_and_user_changes(env, others[0], others[1], "evt-ldap-1", "ldap")
        u = some_user(env.sim.org())
        env.sim.admin("POST", "/_sim/user/update", {"userid": u["userid"], "dept_id_list": [new_dept]})
        env.wait_converged("a user moved into the new department")
        # A leader change: one department/get (the department whose leaders changed), no more.
        before = department_gets(env)
        env.sim.admin("POST", "/_sim/user/update", {"userid": u["userid"],
                                                    "leader_in_dept": [{"dept_id": new_dept, "leader": True}]})
        env.wait_converged("a user became the new department's leader")
        self.assertEqual(department_gets(env) - before, 1, env.sim.stats()["apis"])
        people = {a["employeenumber"][0]: (dn, a) for dn, a in env.slapd.search(PEOPLE, "(objectClass=inetOrgPerson)")}
        self.assertEqual([norm_dn(x) for x in people["evt-ldap-1"][1]["manager"]], [norm_dn(people[u["userid"]][0])])
        # A user leaves (disabled: the next batch reads the directory again) and comes back.
        env.sim.admin("POST", "/_sim/user/remove", {"userid": "evt-ldap-1"})
        env.wait_converged("a user left")
        self.assertEqual(len(env.slapd.search(DISABLED, "(employeeNumber=evt-ldap-1)")), 1)
        env.sim.admin("POST", "/_sim/user/create", {"userid": "evt-ldap-1", "name": "回来了",
                                                    "dept_id_list": [new_dept]})
        env.wait_converged("the user re-joined")
        # A leader of the multi-leader department leaves: the next one becomes its members' manager.
        env.sim.admin("POST", "/_sim/user/remove", {"userid": leaders[0]})
        env.wait_converged("the first leader left")
        # The department is emptied and removed.
        for userid in (u["userid"], "evt-ldap-1"):
            env.sim.admin("POST", "/_sim/user/update", {"userid": userid, "dept_id_list": [others[0]]})
        env.sim.admin("POST", "/_sim/dept/remove", {"dept_id": new_dept})
        env.wait_converged("a department removed")
        self.assertEqual(env.slapd.search(DEPTS, f"(businessCategory={new_dept})"), [])
        self.assertTrue(any(r["kind"] == "event" for r in env.history()))
        env.stop_agent()
        # A full sync now plans nothing and writes nothing: the events gave what it gives.
        before = env.slapd.search(SUFFIX, "(objectClass=*)", ["entryCSN"])
        env.agent("sync", check=0)
        self.assertEqual(counts(env)["changes_planned"], 0)
        self.assertEqual(env.slapd.search(SUFFIX, "(objectClass=*)", ["entryCSN"]), before)

    def test_stream_events_converge_on_slapd(self):
        env = LdapRunEnv("users=60,departments=12,depth=3,seed=7")
        self.addCleanup(env.stop)
        self.run_events(env)

    def test_sibling_names_the_directory_holds_equal_follow_events(self):
        # Before: an event renaming 200 to "sales" took "Sales" from 300, which held it (the lowest
        # id won), and a name given back stayed suffixed until the next full sync (the event path
        # kept the cached "Sales (300)").
        env = LdapRunEnv("users=10,departments=2,depth=1,seed=8")
        self.addCleanup(env.stop)
        for dept_id, name in ((200, "Marketing"), (300, "Sales")):
            env.sim.admin("POST", "/_sim/dept/create", {"dept_id": dept_id, "name": name, "parent_id": 1})
        env.start_agent()
        env.wait_first_full_sync()

        def ous():
            env.wait_events_done()
            return {d: [x[1]["ou"][0] for x in env.slapd.search(
                DEPTS, f"(&(objectClass=organizationalUnit)(businessCategory={d}))", ["ou"])] for d in (200, 300)}

        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 200, "name": "sales"})
        env.wait(lambda: ous() == {200: ["sales (200)"], 300: ["Sales"]}, "the holder keeps its name", timeout=30)
        # 300 lets the name go: 200 takes it in the batch after (here: another event's).
        env.sim.admin("POST", "/_sim/dept/update", {"dept_id": 300, "name": "Support"})
        env.wait(lambda: ous() == {200: ["sales (200)"], 300: ["Support"]}, "the holder renamed", timeout=30)
        env.sim.admin("POST", "/_sim/dept/create", {"dept_id": 400, "name": "Later", "parent_id": 1})
        env.wait(lambda: ous() == {200: ["sales"], 300: ["Support"]}, "the name handed over", timeout=30)
        self.assertEqual({r["status"] for r in env.history() if r["kind"] == "event"}, {"succeeded"})
        env.stop_agent()
        env.agent("sync", check=0)
        self.assertEqual(counts(env)["changes_planned"], 0)

    def test_without_a_primary_department_attribute_too(self):
        # departmentNumber not mapped: the directory holds no primary department, only memberships
        # and the manager; a user an event does not name must still keep its manager.
        env = LdapRunEnv("users=60,departments=12,depth=3,seed=7", primary_attribute=False)
        self.addCleanup(env.stop)
        self.run_events(env)


if __name__ == "__main__":
    unittest.main()
