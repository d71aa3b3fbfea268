#!/usr/bin/env bash
# cri_kata_test.sh: the CRI end-to-end scenario (cri_scenario.py) with runtime handler "kata":
# containerd's cri plugin drives our containerd-shim-kata-v2, which runs each pod in a QEMU VM
# around our kata-agent. Guest assets come from tools/osbuilder/build-guest-assets.sh (cached),
# the kata configuration from tests/e2e/lib.sh's e2e_write_kata_config. Also checks that the
# container's kernel is not the host's. Output and exit codes as cri_runc_test.sh.
#   cri_kata_test.sh --shim PATH --agent PATH [--keep]
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cri/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/e2e/lib.sh
. "$repo/tests/e2e/lib.sh"

shim="" agent="" keep=""
while (($#)); do
  case $1 in
    --shim) shim=$2; shift 2 ;;
    --agent) agent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 --shim PATH --agent PATH [--keep]" >&2; exit 2 ;;
  esac
done

if reason=$(cri_skip_reason); then
  echo "SKIP: $reason"
  exit 77
fi
if [ ! -x "$shim" ] || [ ! -x "$agent" ]; then
  echo "FAIL: setup [kata]: --shim ($shim) and --agent ($agent) must be built executables"
  echo "0 passed, 1 failed"
  exit 1
fi

cri_test_init kata "$keep"
cri_test_kata_setup "$agent" "$shim" || exit 1
# A pod is a VM booted under TCG here: allow waits several times longer than runc's.
cri_test_scenario --handler kata --time-scale 4
