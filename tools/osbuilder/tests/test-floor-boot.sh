#!/usr/bin/env bash
# The benchmark floor initrd boots and powers the VM off by itself (QEMU exits with 0).
source "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 not installed"
K=$(debian_kernel)
"$OSBUILDER" floor-initrd --kernel-dir "$K" --out "$T/floor.img" >/dev/null
[ "$(cpio_cat "$T/floor.img" etc/kata-agent/modules.load | wc -l)" -gt 0 ] || fail "floor initrd has no modules.load"
mkdir "$T/share"
start=$(now)
boot_qemu "$K/vmlinux" "$T/floor.img" "$T/console.log" "$T/share"
wall=$(elapsed "$start")
grep -q "reboot: Power down" "$T/console.log" || { cat "$T/console.log" >&2; fail "the floor init did not power the VM off"; }
pass "floor boot (QEMU start to power-off) ${wall}s wall"
