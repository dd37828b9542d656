#!/usr/bin/env bash
# End-to-end demo of dingbridge-proxy on this machine: builds, generates a test CA and a local
# HTTPS server, starts the proxy on a copy of configs/proxy.yaml (plus a demo tenant), then
# shows a verified HTTPS request through the tunnel, the refusals, and the access log.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=${BUILD_DIR:-build}/proxy/dingbridge-proxy
DEMO=.demo/proxy
rm -rf "$DEMO" && mkdir -p "$DEMO"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "==> test certificates ($DEMO)"
tests/sim/make-test-certs.sh "$DEMO" >/dev/null

echo "==> local HTTPS server (openssl s_server) standing in for a destination"
TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl s_server -quiet -accept 127.0.0.1:$TLS_PORT -cert $DEMO/server.pem -key $DEMO/server.key -www >/dev/null 2>&1 &
pids+=($!)

echo "==> proxy config: configs/proxy.yaml + a demo tenant allowed to reach localhost:$TLS_PORT"
DEMO_PASSWORD=demo-password
HASH=$(echo "$DEMO_PASSWORD" | $BIN hash-password)
export DINGBRIDGE_AGENT_PASSWORD_HASH="$HASH"
cat > $DEMO/demo-tenant.yaml <<YAML
  - name: demo
    users:
      - name: demo
        password_hash: "$HASH"
    destinations: ["localhost:$TLS_PORT"]
    allow_internal_networks: ["127.0.0.0/8", "::1/128"]

YAML
# Listen on a free port; insert the demo tenant at the end of the tenants list (before `log:`).
sed -e 's/"127.0.0.1:3128"/"127.0.0.1:0"/' -e '/"\[::1\]:3128"/d' -e 's/"127.0.0.1:9128"/"127.0.0.1:0"/' configs/proxy.yaml |
  awk -v f=$DEMO/demo-tenant.yaml '/^# Diagnostic log/ { while ((getline l < f) > 0) print l } { print }' > $DEMO/proxy.yaml
$BIN -c $DEMO/proxy.yaml --check-config
$BIN -c $DEMO/proxy.yaml --ready-file $DEMO/ready >$DEMO/access.log 2>$DEMO/proxy.log &
pids+=($!)
for _ in $(seq 100); do [[ -s $DEMO/ready ]] && break; sleep 0.1; done
PROXY=$(head -1 $DEMO/ready)
echo "    proxy listening on $PROXY"

echo "==> curl -p -x http://demo:***@$PROXY https://localhost:$TLS_PORT/ (certificate verified against the demo CA)"
for _ in $(seq 50); do curl -s -o /dev/null --cacert $DEMO/ca.pem https://localhost:$TLS_PORT/ && break; sleep 0.1; done
page=$(curl -sS -p -x "http://demo:$DEMO_PASSWORD@$PROXY" --cacert $DEMO/ca.pem "https://localhost:$TLS_PORT/")
echo "    HTTPS answer through the tunnel: $(printf '%s\n' "$page" | grep -m1 -o 's_server -quiet.*' | cut -c1-60)..."

echo "==> refusals"
code() { curl -s -o /dev/null -w "%{http_connect}" -p -x "$1" "$2" --cacert $DEMO/ca.pem -m 5 || true; }
echo "    no credentials                    -> $(code "http://$PROXY" "https://localhost:$TLS_PORT/")"
echo "    wrong password                    -> $(code "http://demo:wrong@$PROXY" "https://localhost:$TLS_PORT/")"
echo "    destination not allowed           -> $(code "http://demo:$DEMO_PASSWORD@$PROXY" "https://example.com/")"
echo "    cloud metadata address            -> $(code "http://agent:$DEMO_PASSWORD@$PROXY" "https://169.254.169.254/")"
sleep 0.3
echo "==> access log"
cat $DEMO/access.log
