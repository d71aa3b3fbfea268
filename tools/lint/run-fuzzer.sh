#!/usr/bin/env bash
# run-fuzzer.sh FUZZER CORPUS_DIR SECONDS WORK_DIR: runs a libFuzzer binary for SECONDS over the
# committed seed corpus (read-only: new inputs go to WORK_DIR/corpus), with crash, leak and
# timeout inputs kept in WORK_DIR/artifacts. A crash fails (exit 1) and the input is printed as
# hex, so the CI log keeps it too; reproduce with `FUZZER ARTIFACT`.
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3 work=$4
[ -x "$fuzzer" ] || { echo "run-fuzzer: $fuzzer is not built (check-sanitize builds it)" >&2; exit 2; }
nseeds=$(find "$seeds" -maxdepth 1 -type f 2>/dev/null | wc -l)
if [ "$nseeds" -eq 0 ]; then echo "run-fuzzer: no seed corpus in $seeds" >&2; exit 2; fi
name=$(basename "$fuzzer")
mkdir -p "$work/corpus" "$work/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}
status=0
# FUZZ_DETECT_LEAKS=0 for a target whose inputs finish on other threads: libFuzzer's per-input
# leak check then sees memory still in flight (LeakSanitizer still checks at exit).
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
  -detect_leaks="${FUZZ_DETECT_LEAKS:-1}" \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" >"$work/log" 2>&1 || status=$?
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' \
  "$work/log" || true
if [ "$status" -ne 0 ]; then
  tail -n 60 "$work/log"
  for a in "$work"/artifacts/*; do
    [ -f "$a" ] || continue
    echo "run-fuzzer: $name kept $a ($(wc -c <"$a") bytes):"
    od -An -tx1 -v "$a" | head -n 32
  done
  echo "run-fuzzer: $name failed (exit $status)"
  exit 1
fi
echo "run-fuzzer: $name ran ${seconds}s over $nseeds seeds, no crash"
