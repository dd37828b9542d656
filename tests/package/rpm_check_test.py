"""scripts/check-rpm-deps.sh finds what keeps an RPM from RHEL 9: an RPM made from the ordinary
(Debian-linked) build must fail it, naming Debian's libraries, CURL_OPENSSL_4 and GCC 12's
libstdc++ symbol versions. The portable RPM passing it is `scripts/package.sh rpm` (.ci/run)."""
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkg  # noqa: E402

CHECK = Path(__file__).resolve().parents[2] / "scripts" / "check-rpm-deps.sh"


@unittest.skipUnless(shutil.which("rpmbuild") and shutil.which("rpm2cpio"), "rpm (Debian package) is needed")
class RpmCheck(unittest.TestCase):
    def test_debian_linked_rpm_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            rpm = pkg.build("RPM", d)
            p = subprocess.run([str(CHECK), str(rpm)], capture_output=True, text=True, timeout=300)
            print(p.stdout[-3000:])
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("CURL_OPENSSL_4", p.stdout)
            self.assertRegex(p.stdout, r"needs libsimdjson\.so\.\d+")
            self.assertRegex(p.stdout, r"GLIBCXX_3\.4\.\d+")


if __name__ == "__main__":
    unittest.main()
