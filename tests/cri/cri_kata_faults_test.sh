#!/usr/bin/env bash
# cri_kata_faults_test.sh: faults and endurance with runtime handler "kata" through containerd
# 1.6's cri plugin (cri_faults_scenario.py, in the world lib.sh's cri_setup makes):
#   - containerd restarted (SIGTERM, started again with the same config) under a pod with a
#     running httpd: the pod stays READY, the container RUNNING, the same shim and QEMU serve
#     it, its IP serves the token, ExecSync works; Stop/Remove then leave nothing;
#   - QEMU killed (-9) under a pod with two containers: both reach EXITED with a non-zero exit
#     code, the pod NOTREADY; StopPodSandbox + RemovePodSandbox leave nothing;
#   - 30 ExecSync into one pod: the shim's open fds do not grow;
#   - --cycles N (default 50) pod create/start/exec/stop/remove cycles, timed: containerd's open
#     fds do not grow (+5 slack), and nothing of any of the test's pods is left.
# Output and exit codes as cri_kata_test.sh: PASS/FAIL lines, `N passed, N failed` last, 1 on
# any failure, 77 (SKIP) when the host cannot run it at all.
#   cri_kata_faults_test.sh --shim PATH --agent PATH [--cycles N] [--execs N] [--keep]
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cri/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/e2e/lib.sh
. "$repo/tests/e2e/lib.sh"

usage() {
  echo "usage: $0 --shim PATH --agent PATH [--cycles N] [--execs N] [--parts LIST] [--keep]" >&2
  exit 2
}
shim="" agent="" keep="" cycles=50 execs=30 parts=""
while (($#)); do
  case $1 in
    --shim) shim=$2; shift 2 ;;
    --agent) agent=$2; shift 2 ;;
    --cycles) cycles=$2; shift 2 ;;
    --execs) execs=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;   # a subset of restart,qemu-kill,exec-fds,cycles
    --keep) keep=1; shift ;;
    *) usage ;;
  esac
done
if ! [[ $cycles =~ ^[1-9][0-9]*$ && $execs =~ ^[1-9][0-9]*$ ]]; then usage; fi

if reason=$(cri_skip_reason); then
  echo "SKIP: $reason"
  exit 77
fi
if [ ! -x "$shim" ] || [ ! -x "$agent" ]; then
  echo "FAIL: setup [kata]: --shim ($shim) and --agent ($agent) must be built executables"
  echo "0 passed, 1 failed"
  exit 1
fi
command -v qemu-system-x86_64 >/dev/null || {
  echo "FAIL: setup [kata]: qemu-system-x86_64 is not installed"
  echo "0 passed, 1 failed"
  exit 1
}

t_start=$SECONDS
cri_test_init kata "$keep"
cri_test_kata_setup "$agent" "$shim" || exit 1
# The scenario runs in the test's netns: it looks for taps in the host's through this shell's.
export CRI_HOST_NETNS_PID=$$
# A pod is a VM booted under TCG here: allow waits several times longer than runc's.
cri_test_scenario_script "$here/cri_faults_scenario.py" --handler kata --time-scale 4 \
  --cycles "$cycles" --execs "$execs" ${parts:+--parts "$parts"}
echo "total: $((SECONDS - t_start))s"
