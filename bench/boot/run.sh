#!/usr/bin/env bash
# bench/boot/run.sh [-n RUNS] [--firmware default|qboot] [--kernel debian|minimal]
#                   [--build DIR] [--agent PATH] [--memory MIB] [--template] [--record]
#                   [--compare-agent PATH]
#
# Boot-to-agent-ready time against the floor, in one run: builds (or finds cached) the guest
# kernel, the kata-agent initrd (build-guest-assets.sh) and the floor initrd (osbuilder.sh
# floor-initrd), then runs kata-bench-boot, which alternates floor and agent boots RUNS times
# and prints medians, min/max, the ratio agent/floor (target < 1.10) and QEMU's RSS/PSS once
# the agent answers. --template also times VMs restored from a saved template.
# --record appends the output to bench/results/boot-<date>.txt.
#
#   --build DIR   the CMake build dir holding kata-agent and bench/boot/kata-bench-boot
#                 (default: $KATA_BUILD_DIR, else <repo>/build)
#   --agent PATH  the kata-agent binary (default: DIR/src/agent/service/kata-agent)
#   --compare-agent PATH  a second agent binary (e.g. stripped): its initrd is booted in
#                 every round too and compared with the floor and the first agent
#
# Needs root (QEMU, device nodes in the initrd). Assets are cached under
# ${KATA_CACHE_DIR:-/var/cache/kata-cpp}/bench/<kernel>/; VMs run in a temp dir that
# kata-bench-boot removes, also on Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "bench/boot: error: $*" >&2; exit 1; }

runs=5 firmware=default kernel=debian build=${KATA_BUILD_DIR:-$repo/build} agent="" memory=""
templ=0 record=0 compare=""
while (($#)); do
  case $1 in
    -n | --runs) runs=${2:?-n needs a number}; shift 2 ;;
    --firmware) firmware=${2:?--firmware needs default or qboot}; shift 2 ;;
    --kernel) kernel=${2:?--kernel needs debian or minimal}; shift 2 ;;
    --build) build=${2:?--build needs a DIR}; shift 2 ;;
    --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
    --memory) memory=${2:?--memory needs MiB}; shift 2 ;;
    --template) templ=1; shift ;;
    --compare-agent) compare=${2:?--compare-agent needs a PATH}; shift 2 ;;
    --record) record=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: expected a positive number"
[ "$(id -u)" = 0 ] || die "needs root (QEMU, initrd device nodes)"

bench_bin=$build/bench/boot/kata-bench-boot
agent=${agent:-$build/src/agent/service/kata-agent}
[ -x "$agent" ] || die "kata-agent not built ($agent): run cmake -S $repo -B $build && make -C $build kata-agent (or pass --agent PATH)"
[ -x "$bench_bin" ] || die "kata-bench-boot not built ($bench_bin): run cmake -S $repo -B $build && make -C $build kata-bench-boot"

case $firmware in
  default) fw_args=() ;;
  qboot)
    fw=/usr/share/qemu/qboot.rom
    [ -r "$fw" ] || die "qboot firmware $fw not found (apt-get install qemu-system-x86)"
    fw_args=(--firmware "$fw") ;;
  *) die "--firmware $firmware: expected default or qboot" ;;
esac

cache=${KATA_CACHE_DIR:-/var/cache/kata-cpp}
case $kernel in
  debian) ;;
  minimal)
    # build-kernel.sh would build it (about 9 minutes): only use one that is already cached.
    compgen -G "$cache/kernel/minimal-*/vmlinux" >/dev/null ||
      die "minimal kernel not cached under $cache/kernel/: build it first with tools/packaging/kernel/build-kernel.sh (about 9 minutes)" ;;
  *) die "--kernel $kernel: expected debian or minimal" ;;
esac

assets=$cache/bench/$kernel
mkdir -p "$assets"
echo "bench/boot: guest assets in $assets (cached; rebuilt when the agent changes)" >&2
out=$("$repo/tools/osbuilder/build-guest-assets.sh" --agent "$agent" --out-dir "$assets" --kernel "$kernel") ||
  die "build-guest-assets.sh failed"
vmlinux=$(sed -n 's/^kernel=//p' <<<"$out")
initrd=$(sed -n 's/^initrd=//p' <<<"$out")
kdir=$(sed -n 's/^kernel_dir=//p' <<<"$out")
{ [ -f "$vmlinux" ] && [ -f "$initrd" ] && [ -d "$kdir" ]; } ||
  die "build-guest-assets.sh printed no usable kernel=/initrd=/kernel_dir= lines: $out"

compare_initrd=""
if [ -n "$compare" ]; then
  [ -x "$compare" ] || die "--compare-agent $compare: not an executable file"
  mkdir -p "$assets/compare"
  out=$("$repo/tools/osbuilder/build-guest-assets.sh" --agent "$compare" --out-dir "$assets/compare" --kernel "$kernel") ||
    die "build-guest-assets.sh failed for --compare-agent $compare"
  compare_initrd=$(sed -n 's/^initrd=//p' <<<"$out")
fi

# The floor initrd: rebuilt when the kernel dir or osbuilder changed since it was made.
floor=$assets/floor-initrd.img
if [ ! -f "$floor" ] || [ "$kdir/vmlinux" -nt "$floor" ] || [ "$repo/tools/osbuilder/osbuilder.sh" -nt "$floor" ]; then
  "$repo/tools/osbuilder/osbuilder.sh" floor-initrd --kernel-dir "$kdir" --out "$floor" >/dev/null ||
    die "osbuilder.sh floor-initrd failed"
fi

args=(--kernel "$vmlinux" --floor-initrd "$floor" --agent-initrd "$initrd" -n "$runs"
      --label "kernel=$kernel firmware=$firmware" "${fw_args[@]}")
[ -n "$memory" ] && args+=(--memory "$memory")
[ "$templ" = 1 ] && args+=(--template)
[ -n "$compare_initrd" ] && args+=(--compare-initrd "$compare_initrd")

if [ "$record" = 1 ]; then
  mkdir -p "$repo/bench/results"
  result=$repo/bench/results/boot-$(date -u +%F).txt
  { echo "# $(date -u '+%F %T UTC') bench/boot/run.sh -n $runs --firmware $firmware --kernel $kernel$([ "$templ" = 1 ] && echo ' --template')${compare:+ --compare-agent $compare} (git $(git -C "$repo" describe --always --dirty 2>/dev/null))"; } >>"$result"
  "$bench_bin" "${args[@]}" | tee -i -a "$result"
  echo "bench/boot: appended to $result" >&2
else
  exec "$bench_bin" "${args[@]}"
fi
