#!/usr/bin/env bash
# Builds the packages; what an administrator gets: docs/install.md.
#   scripts/package.sh [deb|rpm|all]   (default all)
# deb: build-package/, linked against Debian 12's libraries, cpack -G DEB.
# rpm: build-rpm/, -DDINGBRIDGE_PORTABLE=ON (packaging/portable.cmake: the project's own
#      dependencies linked in; simdjson, fmt and spdlog built from Debian's source packages),
#      cpack -G RPM, then scripts/check-rpm-deps.sh (RHEL 9: glibc <= 2.34, OpenSSL 3, libcurl, zlib) and rpmlint.
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
  # simdjson's, fmt's and spdlog's sources from Debian's source packages (the versions of the -dev
  # packages installed), fetched with a private deb-src list so that the machine's apt
  # configuration is untouched; only the parts the build compiles are unpacked.
  sources=$root/build-rpm/sources
  apt_dir=$root/build-rpm/apt
  apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
            -o Dir::State::Lists="$apt_dir/lists" -o APT::Sandbox::User=root)
  fetch_source() {  # <-dev package> <source package> <directory under sources/> <member pattern>
    local dev=$1 source=$2 dest=$sources/$3 pattern=$4 version
    [[ -d $dest ]] && return
    if [[ ! -f $apt_dir/updated ]]; then
      mkdir -p "$apt_dir/lists/partial"
      echo "deb-src http://deb.debian.org/debian $(. /etc/os-release && echo "$VERSION_CODENAME") main" \
        >"$apt_dir/sources.list"
      apt-get -qq "${apt_opts[@]}" update
      touch "$apt_dir/updated"
    fi
    version=$(dpkg-query -W -f='${Version}' "$dev")
    mkdir -p "$apt_dir/download/$source" "$dest.partial"
    (cd "$apt_dir/download/$source" && apt-get -qq "${apt_opts[@]}" source --download-only "$source=$version")
    tar xf "$apt_dir/download/$source/${source}_"*.orig.tar.* -C "$dest.partial" --strip-components=1 \
      --wildcards "$pattern"
    mv "$dest.partial" "$dest"
  }
  fetch_source libsimdjson-dev simdjson simdjson '*/singleheader'
  fetch_source libfmt-dev fmtlib fmt '*/src'
  fetch_source libspdlog-dev spdlog spdlog '*/src'
  BUILD_DIR=build-rpm BUILD_TYPE=Release \
    CMAKE_ARGS="-DDINGBRIDGE_TESTS=OFF -DDINGBRIDGE_PORTABLE=ON -DDINGBRIDGE_SIMDJSON_SOURCE=$sources/simdjson \
    -DDINGBRIDGE_FMT_SOURCE=$sources/fmt -DDINGBRIDGE_SPDLOG_SOURCE=$sources/spdlog" scripts/setup.sh
  rm -f build-rpm/*.rpm
  (cd build-rpm && cpack -G RPM)
  rpm_file=$(ls build-rpm/*.rpm)
  ls -l "$rpm_file"
  scripts/check-rpm-deps.sh "$rpm_file"
  rpmlint -c packaging/rpm/rpmlint.toml "$rpm_file"
fi
