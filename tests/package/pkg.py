"""Builds the .deb/.rpm with CPack from an already built tree (DINGBRIDGE_BUILD_DIR) into a
temporary directory, optionally with another version (an upgrade)."""
import os
import subprocess
from pathlib import Path

BUILD_DIR = Path(os.environ.get("DINGBRIDGE_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))


def build(generator, out_dir, version=None):
    out_dir = Path(out_dir)
    cmd = ["cpack", "-G", generator, "--config", str(BUILD_DIR / "CPackConfig.cmake"), "-B", str(out_dir)]
    if version:
        cmd += ["-D", f"CPACK_PACKAGE_VERSION={version}", "-D", f"CPACK_DEBIAN_PACKAGE_VERSION={version}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=BUILD_DIR)
    if p.returncode != 0:
        raise AssertionError(f"cpack -G {generator} failed:\n{p.stdout}\n{p.stderr}")
    ext = {"DEB": "deb", "RPM": "rpm"}[generator]
    found = sorted(out_dir.glob(f"*.{ext}"))
    if len(found) != 1:
        raise AssertionError(f"expected one .{ext} in {out_dir}: {found}\n{p.stdout}")
    return found[0]
