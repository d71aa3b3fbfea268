#!/usr/bin/env bash
# The minimal kernel (build-kernel.sh; built on first use, ~9 min, cached afterwards) boots
# the stand-in agent both from an initrd and from an ext4 rootfs image on virtio-blk
# (root=/dev/vda), with agent.channel.0 and the 9p share working and no modules to load.
source "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 not installed"
# KATA_MINIMAL_KERNEL_DIR: test an already built kernel dir instead
K=${KATA_MINIMAL_KERNEL_DIR:-$("$REPO/tools/packaging/kernel/build-kernel.sh")}
[ -z "$(find "$K/modules" -name '*.ko')" ] || fail "the minimal kernel should have no modules"

mkdir "$T/share"
token="minimal-$RANDOM-$$"
echo "$token" >"$T/share/hello.txt"
standin="$REPO/tools/osbuilder/tests/standin-init.sh"

check_log() { # LOG WHAT
  grep -q "STANDIN: virtio port agent.channel.0" "$1" || { cat "$1" >&2; fail "$2: agent.channel.0 not seen"; }
  grep -q "STANDIN: 9p file: $token" "$1" || { cat "$1" >&2; fail "$2: 9p share not read"; }
}

"$OSBUILDER" initrd --agent "$standin" --kernel-dir "$K" --out "$T/initrd.img" --debug-console >/dev/null
[ -z "$(cpio_cat "$T/initrd.img" etc/kata-agent/modules.load)" ] || fail "modules.load should be empty for the minimal kernel"
start=$(now)
boot_qemu "$K/vmlinux" "$T/initrd.img" "$T/initrd.log" "$T/share"
wall=$(elapsed "$start")
check_log "$T/initrd.log" initrd
pass "initrd: ${wall}s wall, /init at uptime $(sed -n 's/.*init at uptime \([0-9.]*\).*/\1/p' "$T/initrd.log")s"

"$OSBUILDER" image --agent "$standin" --kernel-dir "$K" --out "$T/rootfs.img" --debug-console >/dev/null
start=$(now)
boot_qemu "$K/vmlinux" "" "$T/image.log" "$T/share" \
  -drive "file=$T/rootfs.img,if=none,id=root,format=raw,readonly=on" -device virtio-blk-pci,drive=root \
  -append "$BOOT_APPEND root=/dev/vda rootfstype=ext4 ro init=/init"
wall=$(elapsed "$start")
check_log "$T/image.log" image
pass "ext4 image on virtio-blk: ${wall}s wall, /init at uptime $(sed -n 's/.*init at uptime \([0-9.]*\).*/\1/p' "$T/image.log")s"
