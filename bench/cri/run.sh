#!/usr/bin/env bash
# bench/cri/run.sh [-n RUNS] [--parallel P] [--settle SEC] [--build DIR] [--agent PATH]
#                  [--shim PATH] [--note TEXT] [--record [FILE]]
#
# Pods through the CRI (containerd 1.6's cri plugin, as a kubelet drives it), runtime handler
# kata (ours: containerd-shim-kata-v2 + QEMU + kata-agent, one VM per pod) against runc, in one
# run:
#   1. serial pod start: RunPodSandbox + CreateContainer + StartContainer of a busybox `sleep`
#      until ContainerStatus is RUNNING, RUNS times each handler, alternating with the floor
#      (the bare VM boot: the kata config's kernel/memory/firmware booting the floor initrd,
#      timed by kata-bench-boot --floor-only, as bench/ctr does); median/min/max, the ratio
#      kata/floor (target < 1.5) and kata/runc; the CPU one start costs (utime+stime from
#      /proc/PID/stat of the pod's shim and everything under it, QEMU with the guest in it;
#      containerd's share apart)
#   2. PSS (/proc/PID/smaps_rollup) of one idle pod: kata's shim and QEMU (target: together
#      < 150 MiB), runc's shim, pause and sleep
#   3. P pods (default 10) started at once by P threads of the driver: wall time from the first
#      request to all RUNNING, for kata and runc; the CPU bound P x (one start's shim+QEMU
#      CPU-s) / nproc and wall/bound (target <= 1.3); the PSS per pod with the P pods idle
# then a summary, and the shim's per-step timings (serial and parallel).
#
#   -n RUNS        serial rounds (default 5)
#   --parallel P   pods started at once (default 10)
#   --settle SEC   idle time before reading PSS (default 5)
#   --build DIR    CMake build dir with containerd-shim-kata-v2, kata-agent, kata-bench-boot
#                  (default: $KATA_BUILD_DIR, else <repo>/build)
#   --agent PATH   kata-agent (default: DIR/src/agent/service/kata-agent)
#   --shim PATH    containerd-shim-kata-v2 (default: DIR/src/runtime/shim/containerd-shim-kata-v2)
#   --note TEXT    a line printed in the header (e.g. "busy machine")
#   --record [FILE] append the output to FILE (default bench/results/cri-<date>.txt)
#
# The world (netns, CNI bridge, containerd with handlers runc and kata, pause and busybox
# images) is tests/cri/lib.sh's cri_setup; the guest assets and the kata configuration are the
# ones tests/cri/cri_kata_test.sh uses (build-guest-assets.sh, tests/e2e/lib.sh's
# e2e_write_kata_config); the measuring is bench/cri/driver.py, run in the netns. Everything is
# torn down (cri_teardown: pods, containerd, shims, QEMU, mounts, bridge, netns, CNI cache,
# cgroups) on exit, also on failure and Ctrl-C; a SIGKILLed run is reaped by the next CRI test
# run (its work dir is a /tmp/kcri-test.* with an owner file). Needs root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "bench/cri: error: $*" >&2; exit 1; }

runs=5 parallel=10 settle=5 build=${KATA_BUILD_DIR:-$repo/build} agent="" shim="" note=""
record=0 record_file=""
while (($#)); do
  case $1 in
    -n | --runs) runs=${2:?-n needs a number}; shift 2 ;;
    --parallel) parallel=${2:?--parallel needs a number}; shift 2 ;;
    --settle) settle=${2:?--settle needs seconds}; shift 2 ;;
    --build) build=${2:?--build needs a DIR}; shift 2 ;;
    --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
    --shim) shim=${2:?--shim needs a PATH}; shift 2 ;;
    --note) note=${2:?--note needs a TEXT}; shift 2 ;;
    --record)
      record=1
      if (($# > 1)) && [[ $2 != -* ]]; then record_file=$2; shift; fi
      shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: expected a positive number"
[[ $parallel =~ ^[1-9][0-9]*$ ]] || die "--parallel $parallel: expected a positive number"
[[ $settle =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--settle $settle: expected seconds"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, containerd, QEMU, mounts)"

if [ "$record" = 1 ]; then
  result=${record_file:-$repo/bench/results/cri-$(date -u +%F).txt}
  mkdir -p "$(dirname "$result")"
  args=(-n "$runs" --parallel "$parallel" --settle "$settle" --build "$build")
  [ -n "$agent" ] && args+=(--agent "$agent")
  [ -n "$shim" ] && args+=(--shim "$shim")
  [ -n "$note" ] && args+=(--note "$note")
  echo "# $(date -u '+%F %T UTC') bench/cri/run.sh -n $runs --parallel $parallel --settle $settle (git $(git -C "$repo" describe --always --dirty 2>/dev/null))${note:+ note: $note}" >>"$result"
  set +e
  "$0" "${args[@]}" | tee -i -a "$result"
  rc=${PIPESTATUS[0]}
  echo "bench/cri: appended to $result" >&2
  exit "$rc"
fi

for tool in containerd ctr runc qemu-system-x86_64 umoci skopeo ip nsenter python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (utils/install-deps.sh)"
done
shim=${shim:-$build/src/runtime/shim/containerd-shim-kata-v2}
agent=${agent:-$build/src/agent/service/kata-agent}
bench_bin=$build/bench/boot/kata-bench-boot
[ -x "$shim" ] || die "containerd-shim-kata-v2 not built ($shim): run cmake -S $repo -B $build && make -C $build containerd-shim-kata-v2"
[ -x "$agent" ] || die "kata-agent not built ($agent): run cmake -S $repo -B $build && make -C $build kata-agent"
[ -x "$bench_bin" ] || die "kata-bench-boot not built ($bench_bin): run make -C $build kata-bench-boot"

# shellcheck source-path=SCRIPTDIR source=../../tests/cri/lib.sh
source "$repo/tests/cri/lib.sh"
# shellcheck source-path=SCRIPTDIR source=../../tests/e2e/lib.sh
source "$repo/tests/e2e/lib.sh"
for fn in cri_setup cri_teardown cri_leftovers cri_netns e2e_write_kata_config; do
  declare -F "$fn" >/dev/null || die "tests/cri/lib.sh or tests/e2e/lib.sh defines no $fn"
done
if reason=$(cri_skip_reason); then die "this host cannot run it: $reason"; fi

proc_start() { # PID: its start time, field 22 of /proc/PID/stat (as tests/cri/lib.sh records it)
  local s f
  s=$(cat "/proc/$1/stat") || return 1
  read -r -a f <<<"${s##*) }"
  echo "${f[19]}"
}
# A /tmp/kcri-test.* dir with an owner file: if this run is SIGKILLed, the next CRI test run
# (tests/cri/lib.sh) finds the owner gone and tears it down.
work=$(mktemp -d /tmp/kcri-test.bench-XXXXXX)
echo "$$ $(proc_start $$)" >"$work/owner"
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$? left
  trap - EXIT INT TERM HUP
  set +eu
  if [ -n "${CRI_DIR:-}" ]; then
    echo "bench/cri: tearing down (pods, containerd, netns $CRI_NETNS)" >&2
    cri_teardown --dir "$work" >&2
    if left=$(cri_leftovers); then
      echo "teardown: nothing left (pods, containerd, shims, QEMU, mounts, netns, CNI cache, cgroups)"
    else
      echo "teardown: left behind: $left"
      [ "$rc" = 0 ] && rc=1
    fi
  fi
  rm -f "$work/owner"
  if [ -z "$(awk -v d="$work" '$5 == d || index($5, d "/") == 1' /proc/self/mountinfo)" ]; then
    rm -rf "$work"
  else
    echo "bench/cri: warning: mounts left under $work; kept" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench/cri: interrupted, cleaning up" >&2; exit 130' INT TERM HUP

echo "bench/cri: guest assets, kata config, floor initrd, then cri_setup in $work" >&2
assets=${KATA_TEST_GUEST_DIR:-${KATA_CACHE_DIR:-/var/cache/kata-cpp}/e2e-assets}
out=$("$repo/tools/osbuilder/build-guest-assets.sh" --agent "$agent" --out-dir "$assets" \
  --debug-console 2>"$work/assets.log") ||
  die "build-guest-assets.sh failed: $(tail -5 "$work/assets.log")"
kernel=$(sed -n 's/^kernel=//p' <<<"$out")
initrd=$(sed -n 's/^initrd=//p' <<<"$out")
kernel_dir=$(sed -n 's/^kernel_dir=//p' <<<"$out")
{ [ -n "$kernel" ] && [ -n "$initrd" ] && [ -n "$kernel_dir" ]; } ||
  die "build-guest-assets.sh printed no kernel/initrd/kernel_dir: $out"
kata_config=$work/configuration-qemu.toml
e2e_write_kata_config "$kata_config" "$kernel" "$initrd"

# The floor boots what the kata config boots: same kernel, memory and firmware (as bench/ctr).
cfg_value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\{0,1\}\([^\"]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$kata_config" | head -1; }
memory=$(cfg_value default_memory)
firmware=$(cfg_value firmware)
floor_cmd=("$bench_bin" --floor-only --kernel "$kernel" --floor-initrd "$work/floor-initrd.img" -n 1)
[ -n "$memory" ] && floor_cmd+=(--memory "$memory")
[ -n "$firmware" ] && floor_cmd+=(--firmware "$firmware")
"$repo/tools/osbuilder/osbuilder.sh" floor-initrd --kernel-dir "$kernel_dir" \
  --out "$work/floor-initrd.img" >/dev/null 2>"$work/floor.log" ||
  die "osbuilder.sh floor-initrd failed: $(tail -5 "$work/floor.log")"

cri_setup --dir "$work" --kata-shim "$shim" --kata-config "$kata_config" 2>"$work/setup.log" ||
  die "cri_setup failed: $(tail -5 "$work/setup.log")"

echo "bench/cri  $(date -u '+%F %T UTC')  git $(git -C "$repo" describe --always --dirty 2>/dev/null)  kernel $(uname -r)  nproc $(nproc)"
[ -n "$note" ] && echo "  note: $note"
echo "  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  $(containerd --version | cut -d' ' -f1,3) (cri plugin), $(runc --version | head -1), $(qemu-system-x86_64 --version | head -1)"
echo "  kata: $shim ($(du -h "$shim" | cut -f1)), config default_memory=${memory:-default} firmware=${firmware:-default}"
echo "  guest kernel $kernel ($(basename "$kernel_dir")), initrd $initrd ($(du -h "$initrd" | cut -f1))"
echo "  pods: pause sandbox + busybox 'sleep 3600', handlers kata and runc, netns $CRI_NETNS, CNI bridge $CRI_BRIDGE $CRI_SUBNET"
echo "  -n $runs, --parallel $parallel, --settle $settle s"
set +e
cri_netns "$CRI_PYTHON" -u "$here/driver.py" --runs "$runs" --parallel "$parallel" \
  --settle "$settle" --floor "${floor_cmd[@]}"
rc=$?
set -e
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$rc" != 0 ]; then
  echo "--- containerd.log, last lines with level=error:"
  grep 'level=error' "$CRI_DIR/containerd.log" | tail -12 | cut -c1-600
  echo "---"
fi
exit "$rc"
