#!/usr/bin/env bash
# check-tidy.sh [-p BUILD_DIR] [FILE...]: runs clang-tidy with the repo's .clang-tidy over every
# tracked production C++ source (src/**/*.cpp except tests and fuzzers; default) or the FILEs,
# using BUILD_DIR/compile_commands.json (default: build). Prints each finding; exit 0: clean,
# 1: findings, 2: cannot run. CLANG_TIDY=... picks the binary (default clang-tidy).
set -euo pipefail
build=build
if [ "${1:-}" = -p ]; then build=$2; shift 2; fi
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done
build=$(realpath -m -- "$build")
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tidy=${CLANG_TIDY:-clang-tidy}
die() { echo "check-tidy: $*" >&2; exit 2; }
command -v "$tidy" >/dev/null || die "$tidy is not installed (bash utils/install-deps.sh installs it)"
[ -f .clang-tidy ] || die "no .clang-tidy at the top of the tree"
[ -f "$build/compile_commands.json" ] ||
  die "$build/compile_commands.json is missing: configure the build first (cmake -S . -B $build)"

if ((${#args[@]})); then
  files=("${args[@]}")
else
  mapfile -t files < <(git ls-files -- 'src/*.cpp' ':(exclude)src/**/test/**' \
    ':(exclude)src/**/fuzz/**' | sed "s|^|$PWD/|")
fi
# Only files the build compiles (a component that is not configured has no compile command).
mapfile -t known < <(/usr/bin/python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    print(e["file"])' "$build/compile_commands.json" | sort -u)
todo=()
for f in "${files[@]}"; do
  if printf '%s\n' "${known[@]}" | grep -qxF -- "$f"; then todo+=("$f"); else
    echo "check-tidy: skipped (not in the build): ${f#"$PWD"/}"; fi
done
((${#todo[@]})) || die "no file to check"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
# Two at a time (the build machines have 2 cores); the compiler's own diagnostics are not ours.
printf '%s\0' "${todo[@]}" |
  xargs -0 -n 4 -P 2 "$tidy" -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option \
    >"$out" 2>&1 || status=$?
findings=$(grep -cE '(warning|error): .*\[[a-z]+-' "$out" || true)
if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
  grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed|^Use -header-filter|^Error while processing' "$out"
  echo "check-tidy: $findings finding(s) in ${#todo[@]} files (clang-tidy exit $status)"
  exit 1
fi
echo "check-tidy: ${#todo[@]} files clean ($("$tidy" --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1))"
