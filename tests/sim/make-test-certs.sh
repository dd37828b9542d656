#!/usr/bin/env bash
# Makes a throw-away test CA and a server certificate for dingtalk-sim (and the demos) in DIR
# (default ./sim-certs):
#   DIR/ca.pem (trust this in clients), DIR/server.pem + DIR/server.key (pass to --cert/--key).
# The server certificate covers localhost, 127.0.0.1, 127.0.0.2, oapi.dingtalk.com and
# api.dingtalk.com (for setups that point DingTalk's names at the simulator).
set -euo pipefail
dir=${1:-./sim-certs}
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=dingtalk-sim test CA" 2>/dev/null
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
cat > ext.cnf <<'EXT'
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,DNS:oapi.dingtalk.com,DNS:api.dingtalk.com
basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 30 \
  -extfile ext.cnf 2>/dev/null
rm -f server.csr ext.cnf ca.srl
echo "$dir/ca.pem $dir/server.pem $dir/server.key"
