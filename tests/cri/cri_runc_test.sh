#!/usr/bin/env bash
# cri_runc_test.sh: the CRI end-to-end scenario (cri_scenario.py) with runtime handler "runc",
# against a private containerd 1.6 + CNI in a network namespace of its own (lib.sh). Prints a
# PASS/FAIL line per check and `N passed, N failed` last; exits 1 on any failure, 77 (SKIP) when
# the host cannot run it at all (not root, no network namespaces).
#   cri_runc_test.sh [--keep]     --keep: keep the work dir (logs, state) even on success
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cri/lib.sh
. "$here/lib.sh"

keep=""
while (($#)); do
  case $1 in
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

if reason=$(cri_skip_reason); then
  echo "SKIP: $reason"
  exit 77
fi

cri_test_init runc "$keep"
# shellcheck disable=SC2119 # cri_test_setup takes cri_setup options, none here
cri_test_setup || exit 1
cri_test_scenario --handler runc
