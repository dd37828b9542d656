#!/usr/bin/env python3
"""Benchmark (not a test): a full dingbridge-agent sync of a generated org into a private slapd
(tests/integration/slapd.py: mdb, dbnosync, StartTLS), then a no-op resync, and for comparison
the same no-op resync against the SQLite target. Prints wall time, agent CPU and peak RSS of
each run, and the number of changes the resync applied (goal: 0).

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \
    python3 tests/bench/agent_ldap_bench.py [--users 100000] [--departments 5000]

The simulator is unlimited (--sim-qps 0) so that the figures are the agent's and slapd's cost.
Loopback only; everything is stopped at the end.
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
from agent_ldap_test import LdapEnv  # noqa: E402


def timed_sync(env):
    t0 = time.monotonic()
    p = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    run = env.history()[0]
    return {"status": run["status"], "wall_s": round(wall, 1), "agent_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "agent_peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "changes_applied": run["counts"]["changes_applied"],
            "items_failed": run["counts"]["items_failed"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--departments", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=8)
    a = ap.parse_args()
    generate = f"users={a.users},departments={a.departments},depth={a.depth},seed=42"
    result = {"users": a.users, "departments": a.departments, "loadavg_at_start": os.getloadavg()[0]}
    env = LdapEnv(generate, agent_qps=1000, concurrency=8, agent_qps_total=10000)
    try:
        env.config.write_text(env.config.read_text().replace("level: info", "level: warn"))
        result["ldap_full"] = timed_sync(env)
        result["ldap_noop"] = timed_sync(env)
        du = subprocess.run(["du", "-sk", str(env.slapd.db)], capture_output=True, text=True).stdout.split()[0]
        result["slapd_db_mib"] = round(int(du) / 1024, 1)
    finally:
        env.stop()
    env = agent_env.Env(generate=generate, qps=0, agent_qps=1000, concurrency=8, agent_qps_total=10000)
    try:
        env.config.write_text(env.config.read_text().replace("level: info", "level: warn"))
        result["sqlite_full"] = timed_sync(env)
        result["sqlite_noop"] = timed_sync(env)
    finally:
        env.stop()
    result["loadavg_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
