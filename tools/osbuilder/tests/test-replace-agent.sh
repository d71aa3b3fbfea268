#!/usr/bin/env bash
# replace-agent swaps /init in an initrd (each compression) and in an ext4 image, in under
# 5 s, and the result is the same as a fresh build with the new agent; --all does it for the
# asset of every configuration*.toml, each shared asset once.
source "$(dirname "$0")/lib.sh"
K=$(debian_kernel)

cp /bin/busybox "$T/old-agent"
agent_variant /bin/busybox "$T/new-agent" "new agent build $RANDOM$$"
chmod 0755 "$T/old-agent" "$T/new-agent"

for comp in none gzip zstd; do
  "$OSBUILDER" initrd --agent "$T/old-agent" --kernel-dir "$K" --out "$T/initrd-$comp" --compression "$comp" --debug-console >/dev/null
  "$OSBUILDER" initrd --agent "$T/new-agent" --kernel-dir "$K" --out "$T/fresh-$comp" --compression "$comp" --debug-console >/dev/null
  cpio_cat "$T/initrd-$comp" init | cmp -s - "$T/old-agent" || fail "initial $comp initrd does not hold the old agent"
  start=$(now)
  "$OSBUILDER" replace-agent --agent "$T/new-agent" --target "$T/initrd-$comp" >/dev/null
  took=$(elapsed "$start")
  cpio_cat "$T/initrd-$comp" init | cmp - "$T/new-agent" || fail "/init in the $comp initrd is not the new agent"
  cmp "$T/initrd-$comp" "$T/fresh-$comp" || fail "$comp initrd after replace-agent differs from a fresh build with the new agent"
  awk -v t="$took" 'BEGIN { exit !(t < 5) }' || fail "replace-agent on a $comp initrd took ${took}s (limit 5 s)"
  pass "replace-agent on a $comp initrd: ${took}s, same bytes as a fresh build"
done

"$OSBUILDER" image --agent "$T/old-agent" --kernel-dir "$K" --out "$T/image.ext4" >/dev/null
start=$(now)
"$OSBUILDER" replace-agent --agent "$T/new-agent" --target "$T/image.ext4" >/dev/null
took=$(elapsed "$start")
debugfs -R "cat /init" "$T/image.ext4" 2>/dev/null | cmp - "$T/new-agent" || fail "/init in the ext4 image is not the new agent"
e2fsck -fn "$T/image.ext4" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log" >&2; fail "ext4 image is inconsistent after replace-agent"; }
pass "replace-agent on an ext4 image: ${took}s, fsck clean"

# --all: two runtime classes sharing one initrd through a symlink, a third with an image,
# a commented-out key that must be ignored.
mkdir -p "$T/share" "$T/defaults" "$T/etc"
"$OSBUILDER" initrd --agent "$T/old-agent" --kernel-dir "$K" --out "$T/share/kata-containers-initrd-1.img" >/dev/null
ln -s kata-containers-initrd-1.img "$T/share/kata-containers-initrd.img"
"$OSBUILDER" image --agent "$T/old-agent" --kernel-dir "$K" --out "$T/share/kata-containers.img" >/dev/null
cp "$T/share/kata-containers-initrd-1.img" "$T/share/untouched.img"
cat >"$T/defaults/configuration-qemu.toml" <<TOML
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
initrd = "$T/share/kata-containers-initrd.img"
# initrd = "$T/share/untouched.img"
TOML
cat >"$T/defaults/configuration-qemu-sev.toml" <<TOML
[hypervisor.qemu]
initrd = '$T/share/kata-containers-initrd-1.img'
TOML
cat >"$T/etc/configuration.toml" <<TOML
[hypervisor.qemu]
image = "$T/share/kata-containers.img"   # rootfs image
TOML
start=$(now)
KATA_CONFIG_SEARCH_DIRS="$T/defaults $T/etc" "$OSBUILDER" replace-agent --agent "$T/new-agent" --all 2>"$T/all.log" ||
  { cat "$T/all.log" >&2; fail "replace-agent --all failed"; }
took=$(elapsed "$start")
cpio_cat "$T/share/kata-containers-initrd-1.img" init | cmp - "$T/new-agent" || fail "--all did not update the qemu/qemu-sev initrd"
debugfs -R "cat /init" "$T/share/kata-containers.img" 2>/dev/null | cmp - "$T/new-agent" || fail "--all did not update the image"
cpio_cat "$T/share/untouched.img" init | cmp -s - "$T/old-agent" || fail "--all touched an asset only named in a comment"
[ -L "$T/share/kata-containers-initrd.img" ] || fail "--all replaced the initrd symlink instead of its target"
[ "$(grep -c "replacing the agent" "$T/all.log")" -eq 2 ] || { cat "$T/all.log" >&2; fail "--all should replace 2 distinct assets"; }
pass "replace-agent --all: 3 configs, 2 distinct assets, ${took}s"

# A config naming a missing asset makes --all fail, but the others are still updated.
echo 'initrd = "/nonexistent/kata-initrd.img"' >"$T/etc/configuration-broken.toml"
expect_fail "$T/err" env KATA_CONFIG_SEARCH_DIRS="$T/defaults $T/etc" "$OSBUILDER" replace-agent --agent "$T/old-agent" --all
grep -q "/nonexistent/kata-initrd.img" "$T/err" || { cat "$T/err" >&2; fail "the error does not name the missing asset"; }
cpio_cat "$T/share/kata-containers-initrd-1.img" init | cmp -s - "$T/old-agent" || fail "--all stopped at the broken config"
pass "replace-agent --all reports a missing asset and updates the rest"
