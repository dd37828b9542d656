#!/usr/bin/env bash
# Checks that an RPM's binaries run on the RHEL 9 family (glibc 2.34, GCC 11's libstdc++,
# OpenSSL 3, libcurl, zlib): every versioned symbol they import (objdump -T) is at most GLIBC_2.34
# (and no GLIBCXX/CXXABI/CURL_OPENSSL_* at all: libstdc++ is linked in, RHEL's libcurl has no
# symbol versions), every library they need (readelf -d NEEDED) is in RHEL 9's base, and so is
# every automatic Requires of the package (rpm -qpR). Prints each problem; exit 1 if any.
# Usage: scripts/check-rpm-deps.sh dingbridge-*.rpm
set -euo pipefail
rpm_file=$(realpath "$1")
MAX_GLIBC=2.34
ALLOWED_LIBS="libgcc_s.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2 libssl.so.3 libcrypto.so.3 libcurl.so.4 libz.so.1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && rpm2cpio "$rpm_file" | cpio -idm --quiet)
problems=0
problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
version_ok() { [ "$(printf '%s\n%s\n' "$1" "$MAX_GLIBC" | sort -V | tail -1)" = "$MAX_GLIBC" ]; }

for bin in "$work"/usr/bin/*; do
  name=$(basename "$bin")
  while read -r lib; do
    [[ " $ALLOWED_LIBS " == *" $lib "* ]] || problem "$name needs $lib (not in RHEL 9's base)"
  done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  while read -r ver; do
    case $ver in
      GLIBC_2.*) version_ok "${ver#GLIBC_}" || problem "$name imports a symbol of $ver (> GLIBC_$MAX_GLIBC)" ;;
      OPENSSL_3.0.0) ;;
      GCC_[3-7].*) ;; # libgcc_s.so.1: RHEL 9's (GCC 11) has up to GCC_7.0.0 for x86_64
      OPENSSL_*) problem "$name imports $ver (RHEL 9 has OpenSSL 3.0)" ;;
      *) problem "$name imports a symbol of version $ver" ;;
    esac
  done < <(objdump -T "$bin" | awk '$2 != "l" && /\*UND\*/ {print $(NF-1)}' | grep -v '^\*UND\*$' |
           sed -n 's/^(\{0,1\}\([A-Z][A-Za-z_]*[0-9][0-9.]*\))\{0,1\}$/\1/p' | sort -u)
  echo "$name: NEEDED $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  echo "$name: newest glibc symbol $(objdump -T "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sort -Vu | tail -1)"
done

while read -r req; do
  case $req in
    logrotate | /bin/sh | /usr/sbin/useradd | /usr/sbin/groupadd | shadow-utils | rpmlib\(* | rtld\(GNU_HASH\)) ;;
    "config(dingbridge) = "*) ;;
    lib*.so* | ld-linux-x86-64.so.2*)
      lib=${req%%(*}
      [[ " $ALLOWED_LIBS " == *" $lib "* ]] || problem "Requires: $req (not in RHEL 9's base)"
      if [[ $req =~ \(GLIBC_([0-9.]+)\) ]]; then
        version_ok "${BASH_REMATCH[1]}" || problem "Requires: $req (> GLIBC_$MAX_GLIBC)"
      elif [[ $req =~ \(([A-Z][A-Za-z_]*_[0-9.]+)\) ]] && [[ ! ${BASH_REMATCH[1]} =~ ^(OPENSSL_3\.0\.0|GCC_[3-7]\..*)$ ]]; then
        problem "Requires: $req"
      fi
      ;;
    *) problem "Requires: $req (unexpected)" ;;
  esac
done < <(rpm -qpR "$rpm_file" 2>/dev/null | sed 's/ *$//')

if ((problems)); then
  echo "$problems problem(s): $rpm_file would not install or run on RHEL 9"
  exit 1
fi
echo "ok: $rpm_file needs only glibc <= $MAX_GLIBC, OpenSSL 3, libcurl, zlib"
