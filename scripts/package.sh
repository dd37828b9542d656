#!/usr/bin/env bash
# Builds the .deb and .rpm packages (CPack) into build-package/: dingbridge-proxy, dingbridge-agent,
# example configuration in /etc/dingbridge (kept on upgrade), systemd units, docs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=build-package CMAKE_ARGS="-DDINGBRIDGE_TESTS=OFF" BUILD_TYPE=Release scripts/setup.sh
if ! command -v rpmbuild >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null
fi
(cd build-package && cpack -G DEB && cpack -G RPM)
ls -l build-package/*.deb build-package/*.rpm
