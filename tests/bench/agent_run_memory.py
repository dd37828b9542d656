#!/usr/bin/env python3
"""Benchmark (not a test): the memory `dingbridge-agent run` keeps after its first full sync.

`run` is the long-running service: it reads the whole org once (a full sync), then follows
events with a small working set for weeks. This starts it on a generated org (stream mode,
through the proxy, simulator unlimited), waits for "following DingTalk events" and prints the
process's RSS (and its anonymous part) at the given seconds after that, plus its peak (VmHWM).

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \\
    python3 tests/bench/agent_run_memory.py [--users 100000] [--departments 5000] \\
      [--glibc-tunables ''] [--at 1,10,30,60]

--glibc-tunables: the agent's GLIBC_TUNABLES; the default is what dingbridge-agent.service sets
(nothing); give glibc.malloc.hugetlb=1 to see the sync unit's setting in a long-lived process.
Loopback only; everything is stopped at the end.
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from agent_run_test import RunEnv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from target_bench import add_glibc_tunables_argument, with_glibc_tunables  # noqa: E402


def status(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: round(int(re.search(key + r":\s+(\d+)", text).group(1)) / 1024, 1)
            for key in ("VmRSS", "RssAnon", "VmHWM")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--departments", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=8)
    add_glibc_tunables_argument(ap, default="")
    ap.add_argument("--at", default="1,10,30,60", help="seconds after the first sync's end")
    a = ap.parse_args()
    env = RunEnv(generate=f"users={a.users},departments={a.departments},depth={a.depth},seed=42",
                 agent_qps=1000, concurrency=8, agent_qps_total=10000)
    result = {"users": a.users, "departments": a.departments, "glibc_tunables": a.glibc_tunables, "mib": {}}
    try:
        env.env = with_glibc_tunables(env.env, a.glibc_tunables)
        env.start_agent()
        env.wait(lambda: "following DingTalk events" in env.agent_log(), "the first full sync", timeout=600)
        start = time.monotonic()
        for at in (float(x) for x in a.at.split(",")):
            time.sleep(max(0.0, start + at - time.monotonic()))
            result["mib"][f"{at:g}s"] = status(env.proc.pid)
    finally:
        env.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
