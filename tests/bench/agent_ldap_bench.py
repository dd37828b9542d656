#!/usr/bin/env python3
"""Benchmark (not a test): a full dingbridge-agent sync of a generated org into a private slapd
(tests/integration/slapd.py: mdb, dbnosync, StartTLS), then a no-op resync, and for comparison
the same no-op resync against the SQLite target. Prints wall time, agent CPU and peak RSS of
each run, and the number of changes the resync applied (goal: 0).

  DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... \\
    python3 tests/bench/agent_ldap_bench.py [--users 100000] [--departments 5000]

The simulator is unlimited (--sim-qps 0) so that the figures are the agent's and slapd's cost.
Loopback only; everything is stopped at the end.
The agent runs with the sync unit's GLIBC_TUNABLES unless given --glibc-tunables '' (glibc's
default) or another value.
"""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from target_bench import AGENT_LIMITS, agent_env, arguments, finish, header, timed_sync  # noqa: E402
from agent_ldap_test import LdapEnv  # noqa: E402


def main():
    a = arguments(__doc__, users=100000, departments=5000, depth=8)
    result = header(a)
    env = LdapEnv(a.generate, **AGENT_LIMITS)
    try:
        env.quiet()
        result["ldap_full"] = timed_sync(env)
        result["ldap_noop"] = timed_sync(env)
        du = subprocess.run(["du", "-sk", str(env.slapd.db)], capture_output=True, text=True).stdout.split()[0]
        result["slapd_db_mib"] = round(int(du) / 1024, 1)
    finally:
        env.stop()
    env = agent_env.Env(generate=a.generate, **AGENT_LIMITS)
    try:
        env.config.write_text(env.config.read_text().replace("level: info", "level: warn"))
        result["sqlite_full"] = timed_sync(env)
        result["sqlite_noop"] = timed_sync(env)
    finally:
        env.stop()
    finish(result)


if __name__ == "__main__":
    main()
