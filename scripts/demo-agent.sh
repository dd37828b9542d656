#!/usr/bin/env bash
# End-to-end demo of dingbridge-agent on this machine (fresh Debian 12): builds, generates test
# certificates, starts the DingTalk simulator (which allow-lists only the proxy's egress address
# 127.0.0.2) and dingbridge-proxy (bound to that egress address), then runs a full sync through
# the proxy into the embedded SQLite directory and prints the history record and a few rows.
# Everything listens on loopback with free ports; background processes are stopped on exit.
#   BUILD_DIR   build directory (default: build)
#   DEMO_ORG    simulator org (default: users=2000,departments=120,depth=6,seed=1)
#   SKIP_SETUP  set to 1 to skip scripts/setup.sh (already built)
#   DEMO_DIR    working directory (default: .demo/agent; emptied first)
#   SIM_BIN, PROXY_BIN, AGENT_BIN  binaries (default: under BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_SETUP:-0}" != 1 ]]; then scripts/setup.sh; fi
BUILD=${BUILD_DIR:-build}
SIM=${SIM_BIN:-$BUILD/tests/sim/dingtalk-sim}
PROXY=${PROXY_BIN:-$BUILD/proxy/dingbridge-proxy}
AGENT=${AGENT_BIN:-$BUILD/agent/dingbridge-agent}
for b in "$SIM" "$PROXY" "$AGENT"; do
  [[ -x $b ]] || { echo "missing $b (build first: scripts/setup.sh)" >&2; exit 1; }
done
DEMO=${DEMO_DIR:-.demo/agent}
rm -rf "$DEMO" && mkdir -p "$DEMO"
DEMO_ABS=$(cd "$DEMO" && pwd)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_file() {  # file, pid, what
  for _ in $(seq 300); do
    [[ -s $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; its log:" >&2; cat "$DEMO/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 did not start in 30 s; its log:" >&2; cat "$DEMO/$3.log" >&2; exit 1
}

echo "==> test certificates ($DEMO)"
tests/sim/make-test-certs.sh "$DEMO" >/dev/null

# Demo-only secrets, passed to the agent as ${env:...} references.
export DEMO_APP_SECRET="demo-app-secret-$RANDOM$RANDOM"
export DEMO_PROXY_PASSWORD="demo-proxy-password-$RANDOM$RANDOM"
ORG=${DEMO_ORG:-users=2000,departments=120,depth=6,seed=1}

echo "==> DingTalk simulator ($ORG), egress allow-list: 127.0.0.2 only, 20 QPS per API"
$SIM --listen 127.0.0.1:0 --port-file $DEMO/sim.port --cert $DEMO/server.pem --key $DEMO/server.key \
  --app-key dingdemoappkey --app-secret "$DEMO_APP_SECRET" --corp-id dingdemocorp \
  --allow-source 127.0.0.2 --generate "$ORG" --qps 20 --log-level warn >$DEMO/sim.log 2>&1 &
pids+=($!)
wait_for_file $DEMO/sim.port $! sim
SIM_PORT=$(head -1 $DEMO/sim.port)
echo "    https://127.0.0.1:$SIM_PORT"

echo "==> dingbridge-proxy (egress bind address 127.0.0.2, tenant 'dingbridge-agent')"
HASH=$(printf '%s\n' "$DEMO_PROXY_PASSWORD" | $PROXY hash-password)
cat > $DEMO/proxy.yaml <<YAML
listeners:
  - address: "127.0.0.1:0"
workers: 1
outgoing:
  bind_address: "127.0.0.2"
tenants:
  - name: dingbridge-agent
    users:
      - name: agent
        password_hash: "$HASH"
    source_networks: ["127.0.0.0/8"]
    # The simulator stands in for oapi.dingtalk.com:443 on loopback, hence the exception.
    destinations: ["127.0.0.1:$SIM_PORT"]
    allow_internal_networks: ["127.0.0.0/8"]
access_log:
  file: "$DEMO_ABS/access.log"
YAML
$PROXY -c $DEMO/proxy.yaml --check-config >/dev/null
$PROXY -c $DEMO/proxy.yaml --ready-file $DEMO/proxy.ready >$DEMO/proxy.log 2>&1 &
pids+=($!)
wait_for_file $DEMO/proxy.ready $! proxy
PROXY_ADDR=$(head -1 $DEMO/proxy.ready | awk '{print $1}')
echo "    http://$PROXY_ADDR"

echo "==> agent.yaml (see configs/agent.yaml for every key) and the default mapping"
cp configs/mapping.yaml $DEMO/mapping.yaml
cat > $DEMO/agent.yaml <<YAML
dingtalk:
  corp_id: dingdemocorp
  app_key: dingdemoappkey
  app_secret: "\${env:DEMO_APP_SECRET}"
  oapi_base_url: "https://127.0.0.1:$SIM_PORT"   # the simulator instead of https://oapi.dingtalk.com
  ca_file: "ca.pem"                               # the demo CA (verification stays on)
  qps: 18                                         # under the simulator's 20 QPS per API
  concurrency: 8
proxy:
  url: "http://$PROXY_ADDR"
  username: agent
  password: "\${env:DEMO_PROXY_PASSWORD}"
target:
  type: sqlite
  path: "org.db"
mapping: "mapping.yaml"
safeguard:
  max_deletes: "10%"
state_dir: "state"
YAML

echo "==> dingbridge-agent check-config --online"
$AGENT -c $DEMO/agent.yaml check-config --online | sed 's/^/    /'

echo "==> dingbridge-agent sync (through the proxy)"
start=$(date +%s%N)
set +e
$AGENT -c $DEMO/agent.yaml sync
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "    exit $rc after $((ms / 1000)).$(( (ms % 1000) / 100 )) s"

echo "==> dingbridge-agent history show 1"
$AGENT -c $DEMO/agent.yaml history show 1 | sed 's/^/    /'

echo "==> a few rows: sqlite3 $DEMO/org.db"
Q() { if command -v sqlite3 >/dev/null; then sqlite3 -header -column $DEMO/org.db "$1"; else
      python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print(*r, sep=" | ") for r in c.execute(sys.argv[2])]' $DEMO/org.db "$1"; fi; }
Q "SELECT (SELECT count(*) FROM departments) AS departments, (SELECT count(*) FROM users) AS users,
          (SELECT count(*) FROM user_departments) AS memberships;"
echo
Q "SELECT external_id, name, parent_external_id AS parent, sort_order FROM departments ORDER BY sort_order LIMIT 5;"
echo
Q "SELECT external_id, username, display_name, email, phone, primary_department AS dept, manager, hired_at
   FROM users ORDER BY external_id LIMIT 5;"

echo "==> proxy access log: $(wc -l < $DEMO/access.log) kept-alive tunnels carried every call (first 3)"
head -3 $DEMO/access.log | sed 's/^/    /'
echo "==> second sync: nothing changed in DingTalk, so nothing is applied"
$AGENT -c $DEMO/agent.yaml sync 2>/dev/null | tail -1 | sed 's/^/    /'
exit $rc
