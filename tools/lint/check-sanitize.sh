#!/usr/bin/env bash
# check-sanitize.sh build|test [BUILD_DIR]
#   build: builds the tree with clang, -Werror and -DKATA_SANITIZE=address,undefined (and the
#          libFuzzer targets) in BUILD_DIR (default build-sanitize; incremental when it exists);
#          a warning or an error fails it.
#   test:  runs there every test that needs no VM, no containerd and no other build (the ctest
#          labels below are excluded). A sanitizer report fails the test it happens in
#          (-fno-sanitize-recover, halt_on_error). Exit: ctest's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mode=${1:?usage: check-sanitize.sh build|test [BUILD_DIR]}
build=${2:-build-sanitize}
for tool in clang clang++; do
  command -v "$tool" >/dev/null ||
    { echo "check-sanitize: $tool is not installed (bash utils/install-deps.sh)" >&2; exit 2; }
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  # -O1 and line tables only: a third of RelWithDebInfo's compile time, readable stacks. The
  # agent links dynamically here (a static binary cannot carry the sanitizer runtimes).
  CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Sanitize \
    -DCMAKE_C_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    -DKATA_WERROR=ON -DKATA_SANITIZE=address,undefined -DKATA_BUILD_FUZZERS=ON \
    -DKATA_AGENT_STATIC=OFF -DKATA_AGENT_ORDER_STARTUP=OFF \
    -DKATA_INSTALL_GUEST_ASSETS=OFF >/dev/null
fi
if [ "$mode" = build ]; then
  echo "check-sanitize: building $build (clang, -Werror, address,undefined, fuzzers)"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! cmake --build "$build" -j2 >"$log" 2>&1; then
    grep -E -A5 'error|warning:' "$log" | head -n 200
    echo "check-sanitize: the build failed"
    exit 1
  fi
  echo "check-sanitize: built"
  exit 0
fi
[ "$mode" = test ] || { echo "check-sanitize: unknown mode $mode" >&2; exit 2; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
cd "$build"
# Labels of tests that boot VMs, run containerd or check the tree: not sanitizer material.
exec ctest --output-on-failure -j1 -LE '^(vm|e2e|cri|osbuilder|packaging|minimal-kernel|lint|deploy|check|fuzz)$'
