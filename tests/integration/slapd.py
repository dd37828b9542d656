"""A private OpenLDAP slapd for tests and benchmarks: temporary slapd.conf (core, cosine,
inetorgperson, nis schemas; back_mdb with dbnosync), the base entry loaded with slapadd, TLS from
a test CA (ldaps and StartTLS), free loopback ports. Never the packaged instance.

The agent binds as cn=agent (not the rootdn), so the server's 500-entry size limit applies and
the agent must page its searches.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import free_port, port_open, stop_process, wait_until  # noqa: E402

SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PW = "Root-Pw-for-tests-4d1c"
AGENT_DN = "cn=agent," + SUFFIX
AGENT_PW = "Ldap-Bind-Pw-9e27c1"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"


class Slapd:
    def __init__(self, workdir, ca, cert, key, extra_conf=""):
        self.dir = Path(workdir) / "slapd"
        self.db = self.dir / "db"
        self.db.mkdir(parents=True)
        self.ca = ca
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 4294967296
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {self.db}
dbnosync
index objectClass eq
# Unpaged searches by the agent stay capped at 500 entries; paged ones may return everything.
limits dn.exact="{AGENT_DN}" size.prtotal=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="{AGENT_DN}" write by * read
{extra_conf}
""")
        base = self.dir / "base.ldif"
        base.write_text(f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {AGENT_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: agent
userPassword: {AGENT_PW}
""")
        subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(base)], check=True, capture_output=True)
        self.port = free_port()
        self.tls_port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}"
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.dir / "slapd.log", "a")
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-f", str(self.conf), "-h", f"{self.url}/ {self.ldaps_url}/"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port) and port_open(self.tls_port), self.proc, "slapd", 30,
                   lambda: (self.dir / "slapd.log").read_text()[-3000:], interval=0.05)

    def stop(self):
        if self.proc:
            stop_process(self.proc, timeout=20)
        self.proc = None
        self.log.close()

    def env(self):
        return dict(os.environ, LDAPTLS_CACERT=self.ca, LDAPTLS_REQCERT="demand")

    def search(self, base, filt="(objectClass=*)", attrs=(), scope="sub"):
        """ldapsearch -LLL over StartTLS as the root DN (no size limit); returns [(dn, {attr: [values]})]."""
        p = subprocess.run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-ZZ", "-x", "-H", self.url, "-D", ROOT_DN,
                            "-w", ROOT_PW, "-b", base, "-s", scope, filt, *attrs],
                           capture_output=True, text=True, env=self.env())
        if p.returncode == 32:  # no such object
            return []
        if p.returncode != 0:
            raise AssertionError(f"ldapsearch {base} {filt}: {p.returncode} {p.stderr}")
        return parse_ldif(p.stdout)

    def modify(self, ldif):
        p = subprocess.run(["ldapmodify", "-ZZ", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
                           input=ldif, capture_output=True, text=True, env=self.env())
        if p.returncode != 0:
            raise AssertionError(f"ldapmodify: {p.returncode} {p.stderr}")


def parse_ldif(text):
    import base64
    entries = []
    for block in text.strip().split("\n\n"):
        if not block.strip():
            continue
        dn, attrs = None, {}
        for line in block.split("\n"):
            if line.startswith("#") or not line:
                continue
            if ":: " in line:
                k, v = line.split(":: ", 1)
                v = base64.b64decode(v).decode()
            else:
                k, v = line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
            if k == "dn":
                dn = v
            else:
                attrs.setdefault(k.lower(), []).append(v)
        entries.append((dn, attrs))
    return entries
