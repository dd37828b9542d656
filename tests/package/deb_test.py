"""The .deb as Debian sees it: lintian clean (no error, no warning) and the files, modes and
maintainer scripts an administrator relies on. Builds the package from the build tree with cpack."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkg  # noqa: E402


@unittest.skipUnless(shutil.which("dpkg-deb") and shutil.which("lintian"), "dpkg-deb and lintian are needed")
class Deb(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.deb = pkg.build("DEB", cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_lintian_clean(self):
        p = subprocess.run(["lintian", "--fail-on", "error,warning", "--display-info", str(self.deb)],
                           capture_output=True, text=True, timeout=600)
        print(p.stdout)
        tags = [line for line in p.stdout.splitlines() if line[:2] in ("E:", "W:")]
        self.assertEqual(tags, [])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_contents(self):
        listing = subprocess.run(["dpkg-deb", "-c", str(self.deb)], capture_output=True, text=True,
                                 check=True).stdout
        files = {line.split()[-1].lstrip("."): line.split()[0] for line in listing.splitlines()}
        for path in ["/usr/bin/dingbridge-proxy", "/usr/bin/dingbridge-agent", "/etc/dingbridge/proxy.env",
                     "/etc/dingbridge/agent.env", "/etc/logrotate.d/dingbridge",
                     "/lib/systemd/system/dingbridge-proxy.service", "/lib/systemd/system/dingbridge-agent.service",
                     "/lib/systemd/system/dingbridge-agent-sync.service",
                     "/lib/systemd/system/dingbridge-agent-sync.timer",
                     "/lib/systemd/system/dingbridge-agent-web.service",
                     "/usr/share/man/man1/dingbridge-proxy.1.gz", "/usr/share/man/man1/dingbridge-agent.1.gz",
                     "/usr/share/man/man5/dingbridge-proxy.yaml.5.gz",
                     "/usr/share/man/man5/dingbridge-agent.yaml.5.gz",
                     "/usr/share/bash-completion/completions/dingbridge-agent",
                     "/usr/share/bash-completion/completions/dingbridge-proxy",
                     "/usr/share/doc/dingbridge/copyright", "/usr/share/doc/dingbridge/changelog.gz",
                     "/usr/share/doc/dingbridge/install.md"]:
            self.assertIn(path, files)
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["dpkg-deb", "-e", str(self.deb), d], check=True)
            conffiles = Path(d, "conffiles").read_text().split()
            self.assertEqual(sorted(conffiles), sorted(
                ["/etc/dingbridge/proxy.yaml", "/etc/dingbridge/agent.yaml", "/etc/dingbridge/mapping.yaml",
                 "/etc/dingbridge/proxy.env", "/etc/dingbridge/agent.env", "/etc/logrotate.d/dingbridge"]))
            for script in ("postinst", "prerm", "postrm"):
                self.assertTrue(os.access(Path(d, script), os.X_OK), script)
            # The packaged proxy writes its access log where logrotate looks.
            subprocess.run(["dpkg-deb", "-x", str(self.deb), d + "/root"], check=True)
            proxy_yaml = Path(d, "root/etc/dingbridge/proxy.yaml").read_text()
            self.assertIn('file: "/var/log/dingbridge/access.log"', proxy_yaml)
            man = subprocess.run(["man", "-l", d + "/root/usr/share/man/man1/dingbridge-agent.1.gz"],
                                 capture_output=True, text=True, env=dict(os.environ, MANWIDTH="100"))
            self.assertIn("--dry-run", man.stdout)
            # logrotate -d needs the dingbridge user (su): checked by install_test.py after install.


if __name__ == "__main__":
    unittest.main()
