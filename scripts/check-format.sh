#!/usr/bin/env bash
# Checks that every tracked C/C++ file is formatted as the repository's .clang-format says
# (clang-format-14, the version CI installs through scripts/setup.sh). Changes nothing; lists the
# files that differ and exits 1 if any. To fix a file: clang-format-14 -i FILE.
#   scripts/check-format.sh            # every tracked *.c *.cc *.cpp *.h *.hpp
#   scripts/check-format.sh FILE...    # only these
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format-14}
command -v "$CLANG_FORMAT" >/dev/null || { echo "$CLANG_FORMAT not found (scripts/setup.sh installs it)" >&2; exit 2; }
if (($#)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp')
fi
bad=()
for f in "${files[@]}"; do
  "$CLANG_FORMAT" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  printf 'not formatted: %s\n' "${bad[@]}"
  echo "${#bad[@]} of ${#files[@]} files differ from .clang-format ($CLANG_FORMAT -i FILE fixes one)"
  exit 1
fi
echo "format: ${#files[@]} files match .clang-format"
