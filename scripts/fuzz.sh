#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 20).
#   scripts/fuzz.sh 20          # the short CI run
#   scripts/fuzz.sh 3600        # a longer local run; findings land in build-fuzz/findings/
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
scripts/setup.sh >/dev/null  # dependencies of the project itself
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
    break
  fi
done
CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDINGBRIDGE_FUZZ=ON >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target request_head_fuzz config_fuzz
mkdir -p "$BUILD_DIR/findings"
for target in request_head config; do
  corpus="$BUILD_DIR/corpus/$target"
  mkdir -p "$corpus"
  echo "==> fuzzing $target for ${SECONDS_PER_TARGET}s"
  "$BUILD_DIR/tests/fuzz/${target}_fuzz" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD_DIR/findings/${target}-" "$corpus" "tests/fuzz/corpus/$target" 2>&1 |
    grep -E "^(#|Done|stat::number_of_executed_units|==|SUMMARY)" | tail -4
done
