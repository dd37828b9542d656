#!/usr/bin/env bash
# Builds the packages; what an administrator gets: docs/install.md.
#   scripts/package.sh [deb|rpm|all]   (default all)
# deb: build-package/, linked against Debian 12's libraries, cpack -G DEB.
# rpm: build-rpm/, -DDINGBRIDGE_PORTABLE=ON (packaging/portable.cmake: the project's own
#      dependencies linked in, simdjson from Debian's source package), cpack -G RPM, then
#      scripts/check-rpm-deps.sh (RHEL 9: glibc <= 2.34, OpenSSL 3, libcurl, zlib) and rpmlint.
# Other package checks: ctest -R package_ (lintian, unit hardening, install/upgrade/purge as root).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
root=$PWD

if [[ $what == deb || $what == all ]]; then
  BUILD_DIR=build-package CMAKE_ARGS="-DDINGBRIDGE_TESTS=OFF" BUILD_TYPE=Release scripts/setup.sh
  (cd build-package && cpack -G DEB)
  ls -l build-package/*.deb
fi

if [[ $what == rpm || $what == all ]]; then
  # simdjson's amalgamated source from Debian's source package (the version of libsimdjson-dev),
  # fetched with a private deb-src list so that the machine's apt configuration is untouched.
  src=$root/build-rpm/simdjson-src
  if [[ ! -f $src/singleheader/simdjson.cpp ]]; then
    apt_dir=$root/build-rpm/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/download"
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    echo "deb-src http://deb.debian.org/debian $suite main" >"$apt_dir/sources.list"
    apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
              -o Dir::State::Lists="$apt_dir/lists" -o APT::Sandbox::User=root)
    apt-get -qq "${apt_opts[@]}" update
    version=$(dpkg-query -W -f='${Version}' libsimdjson-dev)
    (cd "$apt_dir/download" && apt-get -qq "${apt_opts[@]}" source --download-only "simdjson=$version")
    mkdir -p "$src"
    tar xzf "$apt_dir"/download/simdjson_*.orig.tar.gz -C "$src" --strip-components=1 --wildcards '*/singleheader'
  fi
  BUILD_DIR=build-rpm BUILD_TYPE=Release \
    CMAKE_ARGS="-DDINGBRIDGE_TESTS=OFF -DDINGBRIDGE_PORTABLE=ON -DDINGBRIDGE_SIMDJSON_SOURCE=$src" scripts/setup.sh
  rm -f build-rpm/*.rpm
  (cd build-rpm && cpack -G RPM)
  rpm_file=$(ls build-rpm/*.rpm)
  ls -l "$rpm_file"
  scripts/check-rpm-deps.sh "$rpm_file"
  rpmlint -c packaging/rpm/rpmlint.toml "$rpm_file"
fi
