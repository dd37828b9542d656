#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 20),
# as many at a time as JOBS (default 2).
#   scripts/fuzz.sh 15          # the short CI run (each target)
#   scripts/fuzz.sh build       # installs clang and builds the targets only
#   scripts/fuzz.sh --packages-only  # installs clang only
#   scripts/fuzz.sh 3600        # a longer local run; findings land in build-fuzz/findings/
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
    break
  fi
done
[[ $SECONDS_PER_TARGET == --packages-only ]] && exit 0
scripts/setup.sh >/dev/null  # dependencies of the project itself
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
  "tests/fuzz/events_fuzz:tests/fuzz/corpus/events"               # agent: push requests, events, stream frames
)
names=()
for t in "${TARGETS[@]}"; do names+=("$(basename "${t%%:*}")"); done
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target "${names[@]}"
[[ $SECONDS_PER_TARGET == build ]] && exit 0
mkdir -p "$BUILD_DIR/findings"
# JOBS targets at a time: each is a single process, and each gets its full time on its own core.
fuzz_one() {
  local bin=${1%%:*} seeds=${1#*:} name
  name=$(basename "$bin")
  local corpus="$BUILD_DIR/corpus/$name" seeds_arg=()
  mkdir -p "$corpus"
  [[ -d $seeds ]] && seeds_arg=("$seeds")
  "$BUILD_DIR/$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$BUILD_DIR/findings/${name}-" "$corpus" "${seeds_arg[@]}" > "$BUILD_DIR/findings/$name.log" 2>&1
}
status=0
report() {  # <target> <its exit status>
  local name
  name=$(basename "${1%%:*}")
  if (($2 == 0)); then echo "==> $name"; else
    echo "==> $name FAILED: see $BUILD_DIR/findings/$name.log"; tail -30 "$BUILD_DIR/findings/$name.log"; status=1
  fi
  grep -E "^(Done|stat::number_of_executed_units)" "$BUILD_DIR/findings/$name.log" | tail -2 | sed "s/^/    /" || true
}
for ((first = 0; first < ${#TARGETS[@]}; first += ${JOBS:-2})); do
  batch=("${TARGETS[@]:first:${JOBS:-2}}") pids=()
  for t in "${batch[@]}"; do
    echo "==> fuzzing $(basename "${t%%:*}") for ${SECONDS_PER_TARGET}s"
    fuzz_one "$t" & pids+=($!)
  done
  for i in "${!batch[@]}"; do
    rc=0; wait "${pids[$i]}" || rc=$?
    report "${batch[$i]}" "$rc"
  done
done
exit $status
