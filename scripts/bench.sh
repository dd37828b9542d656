#!/usr/bin/env bash
# Benchmarks (never run by the tests). Usage:
#   scripts/bench.sh proxy       # dingbridge-proxy vs tinyproxy vs squid vs a direct connection
#   scripts/bench.sh auth-flood  # tunnels/s of a tenant with valid credentials while other sources
#                                # flood wrong passwords, as a ratio to the same run without flood
# Installs the peers from Debian's packages, runs everything on loopback in one go, and writes
# the results to build/bench/proxy.jsonl and the table in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-proxy}
[[ $what == proxy || $what == auth-flood ]] || { echo "usage: scripts/bench.sh proxy|auth-flood" >&2; exit 2; }
BUILD=${BUILD_DIR:-build}
BENCH=$BUILD/tests/bench/proxy-bench
RUN=$(mktemp -d /tmp/dingbridge-bench.XXXXXX)
chmod 755 "$RUN"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
pid=""
addr=""
stop_peer() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; true; }
trap 'stop_peer; rm -rf "$RUN"' EXIT

start_dingbridge() {  # tenant access: the YAML lines of the bench tenant that say who may use it; extra top-level YAML
  local port; port=$(free_port)
  cat > "$RUN/dingbridge.yaml" <<YAML
${2:-}
listeners: ["127.0.0.1:$port"]
workers: 2
log: {level: warn}
access_log: {file: /dev/null}
limits: {header_timeout: 60s, max_connections: 12000}
tenants:
  - name: bench
$1
    destinations: ["127.0.0.1:*"]
    allow_internal_networks: ["127.0.0.0/8"]
YAML
  "$BUILD/proxy/dingbridge-proxy" -c "$RUN/dingbridge.yaml" >/dev/null 2>"$RUN/dingbridge.log" &
  pid=$!; wait_port "$port"; addr="127.0.0.1:$port"
}

if [[ $what == auth-flood ]]; then
  hash=$(echo "bench-pw" | "$BUILD/proxy/dingbridge-proxy" hash-password)
  # REPLY_DELAY=0s: throttled sources get their 429 at once (the behaviour before auth_failures.reply_delay)
  start_dingbridge "    users: [{name: bench, password_hash: \"$hash\"}]" "auth_failures: {reply_delay: ${REPLY_DELAY:-2s}}"
  auth=$(printf 'bench:bench-pw' | base64)
  B="$BENCH --proxy $addr --auth $auth"
  # The goal row (issue 14): attackers from a few addresses of their own (FLOOD_THREADS threads,
  # one source address each), then the harsher case of ever-new source addresses.
  threads=${FLOOD_THREADS:-8}
  ratio='import json,sys; a,b=(json.loads(x) for x in sys.argv[2:]); print("%s: flooded/unflooded tunnels/s %.2f (%d / %d), %d wrong-password attempts" % (sys.argv[1], b["per_second"]/a["per_second"], b["per_second"], a["per_second"], b["flood_attempts"]))'
  for sources in ${FLOOD_SOURCES:-1 60000}; do
    calm=$($B --label calm tunnels --clients 16 --seconds "$SECONDS_PER_RUN")
    flood=$($B --label flooded tunnels --clients 16 --seconds "$SECONDS_PER_RUN" --flood "$threads" --flood-sources "$sources")
    echo "$calm"; echo "$flood"
    python3 -c "$ratio" "$threads threads x $sources source(s) each" "$calm" "$flood"
  done
  exit 0
fi
scripts/setup.sh >/dev/null
for p in tinyproxy squid; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy squid >/dev/null
    break
  fi
done
ulimit -n "$(ulimit -Hn)" || true
# A proxy holds two descriptors per tunnel; the larger idle run is capped by the hard limit.
IDLE_MAX=$(( $(ulimit -n) / 2 - 500 )); (( IDLE_MAX > 10000 )) && IDLE_MAX=10000

OUT=$BUILD/bench
mkdir -p "$OUT"
RESULTS=$OUT/proxy.jsonl
: > "$RESULTS"
THROUGHPUT_BYTES=${THROUGHPUT_BYTES:-4GiB}

start_tinyproxy() {
  local port; port=$(free_port)
  cat > "$RUN/tinyproxy.conf" <<CONF
Port $port
Listen 127.0.0.1
Timeout 600
MaxClients 20000
Allow 127.0.0.1
LogLevel Critical
CONF
  tinyproxy -d -c "$RUN/tinyproxy.conf" >"$RUN/tinyproxy.log" 2>&1 &
  pid=$!; wait_port "$port"; addr="127.0.0.1:$port"
}

start_squid() {
  local port; port=$(free_port)
  mkdir -p "$RUN/squid"; chown proxy:proxy "$RUN/squid" 2>/dev/null || true
  cat > "$RUN/squid.conf" <<CONF
http_port 127.0.0.1:$port
http_access allow localhost
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log $RUN/squid/cache.log
pid_filename $RUN/squid/squid.pid
coredump_dir $RUN/squid
max_filedescriptors 65536
shutdown_lifetime 1 second
CONF
  squid -N -f "$RUN/squid.conf" >"$RUN/squid.log" 2>&1 &
  pid=$!; wait_port "$port"; addr="127.0.0.1:$port"
}

measure() {  # name address
  local name=$1 addr=$2
  echo "==> $name" >&2
  if [[ $name != direct ]]; then
    for n in 2000 $IDLE_MAX; do
      $BENCH --proxy "$addr" --label "$name" idle --tunnels "$n" --pid "$pid" | tee -a "$RESULTS"
      sleep 1
    done
  fi
  $BENCH --proxy "$addr" --label "$name" throughput --bytes "$THROUGHPUT_BYTES" | tee -a "$RESULTS"
  for c in 1 16 64; do
    $BENCH --proxy "$addr" --label "$name" tunnels --clients "$c" --seconds "$SECONDS_PER_RUN" | tee -a "$RESULTS"
  done
}

measure direct direct
# The start_* functions set $pid and $addr in this shell (no command substitution: the peer
# would inherit its stdout and keep it open).
start_dingbridge "    allow_without_credentials: true
    source_networks: [\"127.0.0.0/8\"]"
measure dingbridge-proxy "$addr"; stop_peer
start_tinyproxy; measure "tinyproxy $(tinyproxy -v | awk '{print $2}')" "$addr"; stop_peer
start_squid; measure "squid $(squid -v | head -1 | awk '{print $4}')" "$addr"; stop_peer

python3 scripts/bench_table.py "$RESULTS" docs/BENCHMARKS.md
echo "results: $RESULTS; table written to docs/BENCHMARKS.md"
