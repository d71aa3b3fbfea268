#!/usr/bin/env bash
# The same inputs give the same bytes: initrds (each compression) and images, built twice
# from copies of the agent with different mtimes, under different umasks and temp dirs.
source "$(dirname "$0")/lib.sh"
K=$(debian_kernel)

mkdir -p "$T/a" "$T/b" "$T/extra"
cp /bin/busybox "$T/a/agent"
cp /bin/busybox "$T/b/agent"
touch -d @1000000 "$T/a/agent"
touch -d @2000000 "$T/b/agent"
echo "extra file" >"$T/extra/motd"

build() { # DIR KIND ARGS...
  local dir=$1 kind=$2
  shift 2
  (umask "$UMASK" && TMPDIR="$dir" "$OSBUILDER" "$kind" --agent "$dir/agent" --kernel-dir "$K" \
    --extra "$T/extra/motd:/etc/motd" "$@" >/dev/null)
}

for comp in none gzip zstd xz; do
  UMASK=022 build "$T/a" initrd --out "$T/a/initrd-$comp" --compression "$comp" --debug-console
  UMASK=077 build "$T/b" initrd --out "$T/b/initrd-$comp" --compression "$comp" --debug-console
  cmp "$T/a/initrd-$comp" "$T/b/initrd-$comp" || fail "initrd ($comp) differs between two builds"
  [ "$(cpio_cat "$T/a/initrd-$comp" etc/motd)" = "extra file" ] || fail "--extra file missing from the $comp initrd"
done
pass "initrds (none, gzip, zstd, xz) identical across builds"

# Changing an input must change the output (the comparison above is not vacuous).
echo "other" >"$T/extra/motd"
UMASK=022 build "$T/a" initrd --out "$T/a/initrd-changed" --compression none --debug-console
if cmp -s "$T/a/initrd-none" "$T/a/initrd-changed"; then fail "a changed --extra file did not change the initrd"; fi
echo "extra file" >"$T/extra/motd"

# (a second apart: mkfs.ext4 copies the staging files' ctimes, which must not leak through)
UMASK=022 build "$T/a" image --out "$T/a/image.ext4" --fs ext4 --debug-console
sleep 1.1
UMASK=077 build "$T/b" image --out "$T/b/image.ext4" --fs ext4 --debug-console
cmp "$T/a/image.ext4" "$T/b/image.ext4" || fail "ext4 image differs between two builds"
debugfs -R "cat /init" "$T/a/image.ext4" 2>/dev/null | cmp - /bin/busybox || fail "ext4 image /init is not the agent"
pass "ext4 images identical across builds"

if command -v mkfs.erofs >/dev/null; then
  UMASK=022 build "$T/a" image --out "$T/a/image.erofs" --fs erofs
  UMASK=077 build "$T/b" image --out "$T/b/image.erofs" --fs erofs
  cmp "$T/a/image.erofs" "$T/b/image.erofs" || fail "erofs image differs between two builds"
  pass "erofs images identical across builds"
else
  echo "note ($TEST_NAME): mkfs.erofs not installed; erofs determinism not checked"
fi
