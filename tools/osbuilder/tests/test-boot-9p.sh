#!/usr/bin/env bash
# Boots Debian's kernel (uncompressed vmlinux through PVH, q35, TCG) with an initrd whose
# /init is the stand-in agent script: it must load every module of modules.load, see the
# agent.channel.0 virtio-serial port and read a file from the kataShared 9p share.
source "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 not installed"
K=$(debian_kernel)

"$OSBUILDER" initrd --agent "$REPO/tools/osbuilder/tests/standin-init.sh" --kernel-dir "$K" \
  --out "$T/initrd.img" --debug-console >/dev/null
mkdir "$T/share"
token="shared-$RANDOM-$$"
echo "$token" >"$T/share/hello.txt"

start=$(now)
boot_qemu "$K/vmlinux" "$T/initrd.img" "$T/console.log" "$T/share"
wall=$(elapsed "$start")
log="$T/console.log"

grep -q "STANDIN: done" "$log" || { cat "$log" >&2; fail "the stand-in init did not finish"; }
if grep -q "insmod .* failed" "$log"; then grep "insmod" "$log" >&2; fail "a module of modules.load did not load"; fi
grep -q "STANDIN: virtio port agent.channel.0" "$log" || { cat "$log" >&2; fail "agent.channel.0 not visible in /sys/class/virtio-ports"; }
grep -q "STANDIN: 9p file: $token" "$log" || { cat "$log" >&2; fail "9p share kataShared not mounted or file not read"; }
init_at=$(sed -n 's/.*STANDIN: init at uptime \([0-9.]*\).*/\1/p' "$log")
mods_at=$(sed -n 's/.*STANDIN: modules loaded at uptime \([0-9.]*\).*/\1/p' "$log")
pass "booted in ${wall}s wall; /init at uptime ${init_at}s, modules loaded at ${mods_at}s; agent.channel.0 and 9p seen"
