#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit + integration) with ctest.
# Extra arguments go to ctest, e.g. scripts/test.sh -R proxy_
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
scripts/setup.sh
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${JOBS:-2}" "$@"
