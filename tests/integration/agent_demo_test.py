"""The README's first command, scripts/demo-agent.sh, run end to end on a small org in a
temporary directory with the freshly built binaries: it must succeed, print the history record
and rows, and leave no background process behind."""
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class DemoScript(unittest.TestCase):
    def test_demo_runs_a_full_sync_and_cleans_up(self):
        with tempfile.TemporaryDirectory(prefix="dingbridge-demo-") as d:
            env = dict(os.environ, SKIP_SETUP="1", DEMO_DIR=str(Path(d) / "demo"),
                       DEMO_ORG="users=200,departments=15,depth=3,seed=5",
                       SIM_BIN=os.environ["DINGTALK_SIM"], PROXY_BIN=os.environ["DINGBRIDGE_PROXY"],
                       AGENT_BIN=os.environ["DINGBRIDGE_AGENT"])
            p = subprocess.run(["bash", str(REPO / "scripts" / "demo-agent.sh")], env=env, capture_output=True,
                               text=True, timeout=240, stdin=subprocess.DEVNULL)
            out = p.stdout + p.stderr
            self.assertEqual(p.returncode, 0, out[-6000:])
            self.assertIn("token: ok", out)
            self.assertIn("status=succeeded", out)
            self.assertIn("users +200", out)
            self.assertIn("run 2: succeeded: 0 of 0 changes applied", out)
            # No simulator or proxy left running from this demo directory.
            leftovers = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if str(Path(d) / "demo") in args:
                    leftovers.append(args)
            self.assertEqual(leftovers, [])


if __name__ == "__main__":
    unittest.main()
