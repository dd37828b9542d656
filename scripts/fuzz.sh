#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 20).
#   scripts/fuzz.sh 15          # the short CI run (each target)
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
# -O1 with line tables, as libFuzzer's documentation suggests: quicker to build than -O2 -g, and
# sanitizer reports still carry file:line.
CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DDINGBRIDGE_FUZZ=ON >/dev/null
# target binary : seed corpus
TARGETS=(
  "tests/fuzz/request_head_fuzz:tests/fuzz/corpus/request_head"   # proxy: CONNECT request heads
  "tests/fuzz/config_fuzz:tests/fuzz/corpus/config"               # proxy: configuration loader
  "tests/fuzz/dingtalk_parse_fuzz:tests/fuzz/corpus/dingtalk_parse"  # agent: DingTalk responses
  "tests/fuzz/mapping_fuzz:tests/fuzz/corpus/mapping"             # agent: mapping.yaml loader
)
names=()
for t in "${TARGETS[@]}"; do names+=("$(basename "${t%%:*}")"); done
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target "${names[@]}"
mkdir -p "$BUILD_DIR/findings"
status=0
for t in "${TARGETS[@]}"; do
  bin=${t%%:*} seeds=${t#*:} name=$(basename "${t%%:*}")
  corpus="$BUILD_DIR/corpus/$name"
  mkdir -p "$corpus"
  echo "==> fuzzing $name for ${SECONDS_PER_TARGET}s"
  seeds_arg=(); [[ -d $seeds ]] && seeds_arg=("$seeds")
  if ! "$BUILD_DIR/$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$BUILD_DIR/findings/${name}-" "$corpus" "${seeds_arg[@]}" > "$BUILD_DIR/findings/$name.log" 2>&1; then
    echo "    FAILED: see $BUILD_DIR/findings/$name.log"; tail -30 "$BUILD_DIR/findings/$name.log"; status=1
  fi
  grep -E "^(Done|stat::number_of_executed_units)" "$BUILD_DIR/findings/$name.log" | tail -2 | sed 's/^/    /'
done
exit $status
