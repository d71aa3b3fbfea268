# shellcheck shell=bash
# Helpers for the osbuilder and packaging test scripts. Source it.
set -euo pipefail

# shellcheck disable=SC2034 # used by the test scripts
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
# shellcheck disable=SC2034
OSBUILDER="$REPO/tools/osbuilder/osbuilder.sh"
FETCH_KERNEL="$REPO/tools/packaging/kernel/fetch-debian-kernel.sh"
TEST_NAME=$(basename "$0" .sh)

T=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX")
QEMU_PIDS=()
test_cleanup() {
  local p
  for p in ${QEMU_PIDS[@]+"${QEMU_PIDS[@]}"}; do
    if kill -TERM "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$T"
}
trap test_cleanup EXIT
trap 'exit 143' TERM INT

fail() { echo "FAIL ($TEST_NAME): $*" >&2; exit 1; }
pass() { echo "ok ($TEST_NAME): $*"; }
now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }

# debian_kernel: the cached Debian guest kernel dir (fetched on first use).
debian_kernel() { "$FETCH_KERNEL"; }

# expect_fail OUTFILE CMD...: CMD must fail; its stderr goes to OUTFILE.
expect_fail() {
  local errf=$1
  shift
  if "$@" >/dev/null 2>"$errf"; then fail "expected failure: $*"; fi
  [ -s "$errf" ] || fail "no error message from: $*"
}

# cpio_cat ARCHIVE PATH: print one member of a (possibly compressed) newc archive.
cpio_cat() {
  local magic
  magic=$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')
  case $magic in
    1f8b*) gzip -dc "$1" ;;
    28b52ffd) zstd -dcq "$1" ;;
    fd377a58) xz -dc "$1" ;;
    *) cat "$1" ;;
  esac | cpio -i --quiet --to-stdout "$2"
}

# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can fail and
# panic ("IO-APIC + timer doesn't work!"); Kata passes it by default for the same reason.
BOOT_APPEND="console=ttyS0 panic=-1 quiet no_timer_check"

# boot_qemu KERNEL INITRD CONSOLE_LOG SHARE_DIR [EXTRA QEMU ARGS...]: boot under TCG on q35
# with the agent channel port and the 9p share, wait (at most 120 s) for QEMU to exit.
# INITRD "" boots without one; a later -append in the extra args replaces the default.
boot_qemu() {
  local kernel=$1 initrd=$2 log=$3 share=$4 pid rc
  local -a initrd_args=()
  [ -z "$initrd" ] || initrd_args=(-initrd "$initrd")
  shift 4
  # timeout(1) stops QEMU after 120 s; killing timeout with TERM (cleanup) passes it on.
  timeout -k 5 120 qemu-system-x86_64 -M q35,accel=tcg -m 512 -nographic -nodefaults -no-user-config -no-reboot \
    -kernel "$kernel" ${initrd_args[@]+"${initrd_args[@]}"} -append "$BOOT_APPEND" \
    -serial "file:$log" \
    -device virtio-serial-pci -chardev "socket,id=ch0,path=$T/agent.sock,server=on,wait=off" \
    -device virtserialport,chardev=ch0,name=agent.channel.0 \
    -fsdev "local,id=fs0,path=$share,security_model=none" -device virtio-9p-pci,fsdev=fs0,mount_tag=kataShared \
    "$@" </dev/null >"$T/qemu.out" 2>&1 &
  pid=$!
  QEMU_PIDS+=("$pid")
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" -ne 124 ] || { tail -n 30 "$log" >&2 || true; fail "QEMU did not exit within 120 s (killed)"; }
  [ "$rc" -eq 0 ] || { cat "$T/qemu.out" >&2; tail -n 30 "$log" >&2 || true; fail "QEMU exited with $rc"; }
}

# agent_variant SRC DST TEXT: a copy of the ELF SRC with different bytes that survive the
# strip osbuilder applies (an allocated section holding TEXT), so tests can tell agents apart.
agent_variant() {
  printf '%s\n' "$3" >"$T/.variant-section"
  objcopy --add-section .kata_test="$T/.variant-section" \
    --set-section-flags .kata_test=alloc,load,readonly,data "$1" "$2" 2>/dev/null ||
    fail "objcopy could not make a variant of $1"
  chmod 0755 "$2"
}
