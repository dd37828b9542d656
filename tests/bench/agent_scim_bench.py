#!/usr/bin/env python3
"""Benchmark (not a test): a full dingbridge-agent sync of a generated org into the real SCIM 2.0
server of tests/scim (scimmy + scimmy-routers on express 4, TLS, tests/integration/scim.py), then
a no-op resync. Prints, for each run, wall time, the agent's CPU time and peak RSS, the SCIM
requests the server counted (all, writes, per method and endpoint), the server's CPU time, the
wall time per user, and the changes applied (goal of the resync: 0 changes, 0 writes). The full
sync's figures are also printed on stderr as soon as it ends.

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \\
    python3 tests/bench/agent_scim_bench.py [--users 20000] [--departments 500]

The simulator is unlimited so that the figures are the agent's and the SCIM server's cost.
Loopback only; everything is stopped at the end.
The agent runs with the sync unit's GLIBC_TUNABLES unless given --glibc-tunables '' (glibc's
default) or another value.
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from target_bench import AGENT_LIMITS, arguments, finish, header, timed_sync  # noqa: E402
from agent_scim_test import ScimEnv  # noqa: E402


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scim_sync(env, users):
    env.scim.reset_stats()
    server_cpu = cpu_seconds(env.scim.proc.pid)
    out = timed_sync(env)
    stats = env.scim.stats()
    out.update({"ms_per_user": round(1000 * out["wall_s"] / max(users, 1), 2),
                "server_cpu_s": round(cpu_seconds(env.scim.proc.pid) - server_cpu, 1),
                "scim_requests": stats["requests"], "scim_writes": stats["writes"],
                "by_method": stats["by_method"], "by_endpoint": stats["by_endpoint"]})
    return out


def main():
    a = arguments(__doc__, users=20000, departments=500, depth=6)
    result = header(a)
    env = ScimEnv(a.generate, scim_extra="    timeout: 60s\n", **AGENT_LIMITS)
    try:
        env.quiet()
        env.config.write_text(env.config.read_text().replace("page_size: 100\n", "page_size: 1000\n"))
        result["scim_full"] = scim_sync(env, a.users)
        print(json.dumps({"scim_full": result["scim_full"]}), file=sys.stderr, flush=True)
        result["scim_noop"] = scim_sync(env, a.users)
        result["store_mib"] = round(env.scim.store.stat().st_size / 2**20, 1)
    finally:
        env.stop()
    finish(result)


if __name__ == "__main__":
    main()
