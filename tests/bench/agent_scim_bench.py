#!/usr/bin/env python3
"""Benchmark (not a test): a full dingbridge-agent sync of a generated org into the real SCIM 2.0
server of tests/scim (scimmy + scimmy-routers on express 4, TLS, tests/integration/scim.py), then
a no-op resync. Prints, for each run, wall time, the agent's CPU time and peak RSS, the SCIM
requests the server counted (all, writes, per method), the server's CPU time, and the changes
applied (goal of the resync: 0 changes, 0 writes).

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \
    python3 tests/bench/agent_scim_bench.py [--users 20000] [--departments 500]

The simulator is unlimited (--sim-qps 0) so that the figures are the agent's and the SCIM
server's cost. Loopback only; everything is stopped at the end.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import agent_env  # noqa: E402
from agent_scim_test import ScimEnv  # noqa: E402


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_sync(env):
    env.scim.reset_stats()
    server_cpu = cpu_seconds(env.scim.proc.pid)
    t0 = time.monotonic()
    p = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    run = env.history()[0]
    stats = env.scim.stats()
    return {"status": run["status"], "wall_s": round(wall, 1), "agent_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "agent_peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
            "server_cpu_s": round(cpu_seconds(env.scim.proc.pid) - server_cpu, 1),
            "scim_requests": stats["requests"], "scim_writes": stats["writes"], "by_method": stats["by_method"],
            "changes_applied": run["counts"]["changes_applied"], "items_failed": run["counts"]["items_failed"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--departments", type=int, default=500)
    ap.add_argument("--depth", type=int, default=6)
    a = ap.parse_args()
    generate = f"users={a.users},departments={a.departments},depth={a.depth},seed=42"
    result = {"users": a.users, "departments": a.departments, "loadavg_at_start": os.getloadavg()[0]}
    env = ScimEnv(generate, qps=0, agent_qps=1000, concurrency=8, agent_qps_total=10000,
                  scim_extra="    timeout: 60s\n")
    try:
        text = env.config.read_text().replace("level: info", "level: warn")
        env.config.write_text(text.replace("page_size: 100\n", "page_size: 1000\n"))
        result["scim_full"] = timed_sync(env)
        print(json.dumps({"scim_full": result["scim_full"]}), file=sys.stderr, flush=True)
        result["scim_noop"] = timed_sync(env)
        result["store_mib"] = round(env.scim.store.stat().st_size / 2**20, 1)
    finally:
        env.stop()
    result["loadavg_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
