#!/usr/bin/env bash
# Builds the .deb and .rpm packages (CPack) into build-package/: both binaries, configuration and
# secrets files in /etc/dingbridge (kept on upgrade), hardened systemd units, logrotate, manual
# pages, bash completion, docs. What an administrator gets: docs/install.md. Checks:
# ctest -R package_ (lintian, unit hardening; the install test needs root and
# DINGBRIDGE_PACKAGE_INSTALL_TEST=1), scripts/check-rpm-deps.sh for the RPM's RHEL 9 dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=build-package CMAKE_ARGS="-DDINGBRIDGE_TESTS=OFF" BUILD_TYPE=Release scripts/setup.sh
(cd build-package && cpack -G DEB && cpack -G RPM)
ls -l build-package/*.deb build-package/*.rpm
