#!/usr/bin/env python3
"""Benchmark (not a test): a full dingbridge-agent sync of a generated org through
dingbridge-proxy into the SQLite target. Prints wall time, the agent's CPU time and peak RSS,
requests made and, against the simulator's per-API QPS limit, the achieved request rate.

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \
    python3 tests/bench/agent_bench.py [--users 100000] [--departments 5000] [--sim-qps 20] [--agent-qps 18]
      [--glibc-tunables ''] (glibc's malloc defaults instead of the sync unit's huge pages)

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from target_bench import add_glibc_tunables_argument, with_glibc_tunables  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--departments", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--sim-qps", type=int, default=20, help="simulator limit per API (0 = unlimited)")
    ap.add_argument("--agent-qps", type=int, default=18)
    ap.add_argument("--agent-qps-total", type=int, default=400, help="dingtalk.qps_total (all APIs)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lean-mapping", action="store_true",
                    help="department description and order not mapped (no department/get per department)")
    ap.add_argument("--resync", action="store_true", help="also measure a second, no-op sync")
    add_glibc_tunables_argument(ap)
    a = ap.parse_args()
    mapping_text = None
    if a.lean_mapping:
        mapping_text = (agent_env.REPO / "configs" / "mapping.yaml").read_text()
        mapping_text = mapping_text.replace('  description: "{{ brief }}"\n', '  description: ""\n').replace(
            '  order: "{{ order }}"\n', '  order: 0\n')
    env = agent_env.Env(generate=f"users={a.users},departments={a.departments},depth={a.depth},seed=42",
                        qps=a.sim_qps, agent_qps=a.agent_qps, concurrency=a.concurrency,
                        agent_qps_total=a.agent_qps_total, mapping_text=mapping_text)
    env.env = with_glibc_tunables(env.env, a.glibc_tunables)
    try:
        # A 100,000-user read costs more than the default monthly budget (10,000): without this the
        # resync would be deferred, as it should be for a real org of that size on that budget.
        cfg = env.config.read_text().replace("level: info", "level: warn").replace(
            "  qps:", "  monthly_call_budget: 0\n  qps:", 1)
        env.config.write_text(cfg)
        t0 = time.monotonic()
        p = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        out, err = p.stdout.read(), p.stderr.read()
        p.returncode = os.waitstatus_to_exitcode(status)
        run = env.history()[0]
        stats = env.sim.stats()
        busiest = max(stats["apis"].items(), key=lambda kv: kv[1]["calls"])
        result = {
            "users": a.users, "departments": a.departments, "sim_qps_limit": a.sim_qps, "agent_qps": a.agent_qps,
            "concurrency": a.concurrency, "glibc_tunables": a.glibc_tunables, "exit": p.returncode,
            "status": run["status"],
            "wall_s": round(wall, 1), "agent_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "agent_peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
            "requests": run["counts"]["requests"], "sim_calls": stats["total_calls"],
            "throttled": stats["throttled"], "retries": run["counts"]["retries"],
            "changes_applied": run["counts"]["changes_applied"],
            "busiest_api": busiest[0], "busiest_api_calls": busiest[1]["calls"],
            "busiest_api_rate": round(busiest[1]["calls"] / wall, 2),
            "per_api_peak_qps": {k: v["peak_qps"] for k, v in stats["apis"].items()},
        }
        # While the busiest API was in use (first to last call): the rate the limiter achieved.
        active_s = busiest[1]["active_ms"] / 1000
        if active_s > 0:
            result["busiest_api_active_s"] = round(active_s, 1)
            result["busiest_api_active_rate"] = round((busiest[1]["calls"] - 1) / active_s, 2)
        if a.sim_qps:
            result["busiest_api_rate_vs_limit"] = round(busiest[1]["calls"] / wall / a.sim_qps, 3)
            if active_s > 0:
                result["busiest_api_active_rate_vs_limit"] = round(result["busiest_api_active_rate"] / a.sim_qps, 3)
        result["calls_by_api"] = {k: v["calls"] for k, v in stats["apis"].items()}
        if a.resync and p.returncode == 0:
            t0 = time.monotonic()
            q = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"], env=env.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, status2, ru2 = os.wait4(q.pid, 0)
            q.stdout.read(), q.stderr.read()
            run2 = env.history()[0]
            result.update({"resync_status": run2["status"], "resync_changes": run2["counts"]["changes_planned"],
                           "resync_wall_s": round(time.monotonic() - t0, 1),
                           "resync_cpu_s": round(ru2.ru_utime + ru2.ru_stime, 2),
                           "resync_peak_rss_mib": round(ru2.ru_maxrss / 1024, 1)})
        if a.json:
            print(json.dumps(result))
        else:
            for k, v in result.items():
                print(f"{k:28} {v}")
        if p.returncode != 0:
            print(out[-2000:], err[-4000:], file=sys.stderr)
            return 1
        return 0
    finally:
        env.stop()


if __name__ == "__main__":
    sys.exit(main())
