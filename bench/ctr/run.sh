#!/usr/bin/env bash
# bench/ctr/run.sh [-n RUNS] [--build DIR] [--agent PATH] [--shim PATH] [--template] [--record]
#
# `ctr run --rm IMAGE ID true` wall time, in one run and alternating each round:
#   kata   our runtime, io.containerd.kata.v2 (containerd-shim-kata-v2 + QEMU + kata-agent)
#   runc   io.containerd.runc.v2, the native baseline
#   floor  the bare VM boot: the same QEMU/kernel/machine/memory as the kata config booting
#          the floor initrd (/init powers off), timed by kata-bench-boot --floor-only
# prints median and min/max of each, the ratio kata/floor (target < 1.25) and kata/runc, then
# the shim's RSS and PSS (and QEMU's) with one running container (target: shim < 8 MiB).
# Then the shim's per-step timings (median over the kata runs, from the "step"/"duration_ms"
# fields of its log lines in containerd's log): where a kata start spends its time.
# --record appends the output to bench/results/ctr-<date>.txt.
#
#   --build DIR   CMake build dir with containerd-shim-kata-v2, kata-agent, kata-bench-boot
#                 (default: $KATA_BUILD_DIR, else <repo>/build)
#   --agent PATH  kata-agent (default: DIR/src/agent/service/kata-agent)
#   --shim PATH   containerd-shim-kata-v2 (default: DIR/src/runtime/shim/containerd-shim-kata-v2)
#   --template    VM templating on ([factory] enable_template, template_path in the temp dir):
#                 one warm-up run makes the template (timed apart), the rounds restore from it
#
# The private containerd, the busybox image and the kata configuration come from the e2e
# helpers in tests/e2e/lib.sh (owned by the shim's e2e tests; see bench/README.md for the
# functions used; KATA_E2E_LIB=FILE sources another). Everything runs in a temp dir removed
# on exit, also on Ctrl-C. Needs root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "bench/ctr: error: $*" >&2; exit 1; }

runs=5 build=${KATA_BUILD_DIR:-$repo/build} record=0 agent="" shim="" template=0
while (($#)); do
  case $1 in
    -n | --runs) runs=${2:?-n needs a number}; shift 2 ;;
    --build) build=${2:?--build needs a DIR}; shift 2 ;;
    --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
    --shim) shim=${2:?--shim needs a PATH}; shift 2 ;;
    --record) record=1; shift ;;
    --template) template=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: expected a positive number"
[ "$(id -u)" = 0 ] || die "needs root (containerd, QEMU, mounts)"

if [ "$record" = 1 ]; then
  mkdir -p "$repo/bench/results"
  result=$repo/bench/results/ctr-$(date -u +%F).txt
  echo "# $(date -u '+%F %T UTC') bench/ctr/run.sh -n $runs$([ "$template" = 1 ] && echo " --template") (git $(git -C "$repo" describe --always --dirty 2>/dev/null))${KATA_E2E_LIB:+ KATA_E2E_LIB=$KATA_E2E_LIB}" >>"$result"
  set +e
  extra=()
  [ "$template" = 1 ] && extra+=(--template)
  "$0" -n "$runs" --build "$build" ${agent:+--agent "$agent"} ${shim:+--shim "$shim"} "${extra[@]}" |
    tee -i -a "$result"
  rc=${PIPESTATUS[0]}
  echo "bench/ctr: appended to $result" >&2
  exit "$rc"
fi

for tool in containerd ctr runc qemu-system-x86_64 umoci skopeo; do
  command -v "$tool" >/dev/null || die "$tool is not installed (utils/install-deps.sh)"
done
shim=${shim:-$build/src/runtime/shim/containerd-shim-kata-v2}
agent=${agent:-$build/src/agent/service/kata-agent}
bench_bin=$build/bench/boot/kata-bench-boot
[ -x "$shim" ] || die "containerd-shim-kata-v2 not built ($shim): run cmake -S $repo -B $build && make -C $build containerd-shim-kata-v2"
[ -x "$agent" ] || die "kata-agent not built ($agent): run cmake -S $repo -B $build && make -C $build kata-agent"
[ -x "$bench_bin" ] || die "kata-bench-boot not built ($bench_bin): run make -C $build kata-bench-boot"

e2e_lib=${KATA_E2E_LIB:-$repo/tests/e2e/lib.sh}
[ -r "$e2e_lib" ] || die "the e2e helpers $e2e_lib have not landed yet (needed: e2e_setup, e2e_teardown; see bench/README.md)"
# shellcheck source=../../tests/e2e/lib.sh
source "$e2e_lib"
for fn in e2e_setup e2e_teardown; do
  declare -F "$fn" >/dev/null || die "$e2e_lib defines no $fn (see bench/README.md)"
done

ctr_() { ctr --address "$E2E_CTR_ADDRESS" --namespace "$E2E_NAMESPACE" "$@"; }
work=$(mktemp -d /tmp/kata-bench-ctr-XXXXXX)
# Tasks still running (Ctrl-C mid-round): killed and deleted while containerd is still up, so
# their shims and VMs go with them.
remove_tasks() {
  [ -n "${E2E_CTR_ADDRESS:-}" ] && [ -S "$E2E_CTR_ADDRESS" ] || return 0
  local id
  for id in $(ctr_ task ls -q 2>/dev/null); do
    ctr_ task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    for _ in $(seq 50); do ctr_ task delete "$id" >/dev/null 2>&1 && break; sleep 0.2; done
  done
  for id in $(ctr_ container ls -q 2>/dev/null); do ctr_ container delete "$id" >/dev/null 2>&1 || true; done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  remove_tasks
  e2e_teardown >&2 || echo "bench/ctr: warning: e2e_teardown failed; check $work" >&2
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench/ctr: interrupted, cleaning up" >&2; exit 130' INT TERM HUP

echo "bench/ctr: starting a private containerd, building the image and guest assets in $work" >&2
e2e_setup --dir "$work" --shim "$shim" --agent "$agent" >&2 || die "e2e_setup failed"
for var in E2E_CTR_ADDRESS E2E_NAMESPACE E2E_IMAGE E2E_KATA_CONFIG E2E_KERNEL E2E_KERNEL_DIR; do
  [ -n "${!var:-}" ] || die "e2e_setup did not set $var (see bench/README.md)"
done

# The floor boots what the kata config boots: same kernel, memory and firmware.
cfg_value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\{0,1\}\([^\"]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$E2E_KATA_CONFIG" | head -1; }
memory=$(cfg_value default_memory)
firmware=$(cfg_value firmware)
floor_args=(--kernel "$E2E_KERNEL" --floor-initrd "$work/floor-initrd.img" -n 1)
[ -n "$memory" ] && floor_args+=(--memory "$memory")
[ -n "$firmware" ] && floor_args+=(--firmware "$firmware")
"$repo/tools/osbuilder/osbuilder.sh" floor-initrd --kernel-dir "$E2E_KERNEL_DIR" \
  --out "$work/floor-initrd.img" >/dev/null || die "osbuilder.sh floor-initrd failed"

template_note=off
if [ "$template" = 1 ]; then
  printf '[factory]\nenable_template = true\ntemplate_path = "%s"\n' "$work/template" >>"$E2E_KATA_CONFIG"
  template_note="on ($work/template)"
fi

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

time_kata() {
  local t0 t1
  t0=$(now)
  ctr_ run --rm --runtime io.containerd.kata.v2 --runtime-config-path "$E2E_KATA_CONFIG" \
    "$E2E_IMAGE" "bench-kata-$1" true >"$work/kata.out" 2>&1 ||
    die "ctr run (kata) failed: $(cat "$work/kata.out")"
  t1=$(now)
  elapsed "$t0" "$t1"
}
time_runc() {
  local t0 t1
  t0=$(now)
  ctr_ run --rm --runtime io.containerd.runc.v2 "$E2E_IMAGE" "bench-runc-$1" true \
    >"$work/runc.out" 2>&1 || die "ctr run (runc) failed: $(cat "$work/runc.out")"
  t1=$(now)
  elapsed "$t0" "$t1"
}
time_floor() {
  local out
  out=$("$bench_bin" --floor-only "${floor_args[@]}") || die "kata-bench-boot --floor-only failed"
  sed -n 's/^floor_seconds=//p' <<<"$out"
}

# stats NAME UNIT VALUES...: median, min, max
stats() {
  local name=$1 unit=$2
  shift 2
  printf '%s\n' "$@" | sort -g | awk -v name="$name" -v unit="$unit" '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%-44s median %.3f %s  (min %.3f, max %.3f, n=%d)\n", name, m, unit, v[1], v[NR], NR }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "bench/ctr on $(uname -r), $(containerd --version | cut -d' ' -f1,3), $(runc --version | head -1), $(qemu-system-x86_64 --version | head -1)"
echo "  kata config $E2E_KATA_CONFIG (default_memory=${memory:-default}, firmware=${firmware:-default})"
echo "  VM templating: $template_note"
echo "  kernel $E2E_KERNEL ($(basename "$E2E_KERNEL_DIR")), initrd ${E2E_INITRD:-?} ($(du -h "${E2E_INITRD:-/dev/null}" 2>/dev/null | cut -f1))"
if [ "$template" = 1 ]; then
  echo "  warm-up (makes the VM template, then restores from it): kata $(time_kata warmup) s"
fi
kata=() runc=() floor=() ratio=()
for ((r = 0; r < runs; r++)); do
  # Rotate the order each round so a load trend hits every variant alike.
  case $((r % 3)) in
    0) k=$(time_kata "$r"); c=$(time_runc "$r"); f=$(time_floor) ;;
    1) c=$(time_runc "$r"); f=$(time_floor); k=$(time_kata "$r") ;;
    2) f=$(time_floor); k=$(time_kata "$r"); c=$(time_runc "$r") ;;
  esac
  kata+=("$k") runc+=("$c") floor+=("$f")
  ratio+=("$(awk -v k="$k" -v f="$f" 'BEGIN { printf "%.3f", k / f }')")
  echo "  round $((r + 1))/$runs: kata $k s, runc $c s, floor $f s, kata/floor x${ratio[-1]}"
done
stats "ctr run true, kata (io.containerd.kata.v2)" s "${kata[@]}"
stats "ctr run true, runc (io.containerd.runc.v2)" s "${runc[@]}"
stats "floor: bare VM boot (QEMU start -> exit)" s "${floor[@]}"
stats "ratio kata/floor (per round)" "" "${ratio[@]}"
m=$(median "${ratio[@]}")
awk -v m="$m" 'BEGIN { printf "  kata over the floor: %+.1f %% (target ratio < 1.25: %s)\n", (m - 1) * 100, m < 1.25 ? "met" : "NOT met" }'
awk -v k="$(median "${kata[@]}")" -v c="$(median "${runc[@]}")" 'BEGIN { printf "  kata/runc (medians): x%.1f\n", k / c }'

# Memory with one running container.
id=bench-mem-$$
ctr_ run -d --runtime io.containerd.kata.v2 --runtime-config-path "$E2E_KATA_CONFIG" \
  "$E2E_IMAGE" "$id" sleep 600 >"$work/mem.out" 2>&1 || die "ctr run -d (kata) failed: $(cat "$work/mem.out")"
for _ in $(seq 100); do
  ctr_ task ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" { ok = 1 } END { exit !ok }' && break
  sleep 0.2
done
# The long-lived shim of this sandbox: its command line names our containerd and the id, and
# it is not the short-lived "start" invocation.
shim_pid=""
for p in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
  case $cmd in
    *containerd-shim-kata-v2*"$E2E_CTR_ADDRESS"*) [[ $cmd == *" start "* || $cmd == *" start" ]] || shim_pid=${p#/proc/} ;;
  esac
done
[ -n "$shim_pid" ] || die "no containerd-shim-kata-v2 process found for $E2E_CTR_ADDRESS"
mem() { awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { printf "RSS %.1f MiB, PSS %.1f MiB", r / 1024, p / 1024 }' "/proc/$1/smaps_rollup"; }
pss_mib() { awk '/^Pss:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/smaps_rollup"; }
echo "  shim (pid $shim_pid), one running container: $(mem "$shim_pid")"
awk -v p="$(pss_mib "$shim_pid")" 'BEGIN { printf "  shim PSS target < 8 MiB: %s\n", p < 8 ? "met" : "NOT met" }'
for q in $(pgrep -P "$shim_pid" -x qemu-system-x86 2>/dev/null; pgrep -P "$shim_pid" qemu 2>/dev/null); do
  echo "  QEMU (pid $q): $(mem "$q")"
  break
done

# Per-step timings of the shim, medians over the timed kata runs (not the warm-up). containerd
# copies each shim's log lines (one JSON object a line) into its own log.
clog=$E2E_DIR/containerd.log
if [ -r "$clog" ] && grep -q '"step":"' "$clog"; then
  echo "  shim steps, median over the kata runs (ms):"
  grep -F '"step":"' "$clog" | grep -E '"sandbox":"bench-kata-[0-9]+"' | awk '
    {
      step = $0; sub(/.*"step":"/, "", step); sub(/".*/, "", step)
      ms = $0; sub(/.*"duration_ms":"/, "", ms); sub(/".*/, "", ms)
      if (!(step in n)) order[++k] = step
      v[step, ++n[step]] = ms + 0
    }
    END {
      for (i = 1; i <= k; i++) {
        s = order[i]; c = n[s]
        for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++)
          if (v[s, b] < v[s, a]) { t = v[s, a]; v[s, a] = v[s, b]; v[s, b] = t }
        m = c % 2 ? v[s, (c + 1) / 2] : (v[s, c / 2] + v[s, c / 2 + 1]) / 2
        printf "    %-18s %7.0f  (min %d, max %d, n=%d)\n", s, m, v[s, 1], v[s, c], c
      }
    }'
else
  echo "  shim steps: no step timings in $clog"
fi
