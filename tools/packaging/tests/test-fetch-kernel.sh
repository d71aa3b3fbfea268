#!/usr/bin/env bash
# fetch-debian-kernel.sh: the pinned kernel lands in the cache as an uncompressed ELF with
# the PVH entry note, with the guest modules and their dependencies; a second run is
# instant; a pin that has left the archive fails naming it, or is followed with a warning.
source "$(dirname "$0")/../../osbuilder/tests/lib.sh"
VERSIONS="$REPO/tools/packaging/scripts/versions.sh"

# versions.yaml reader
[ "$("$VERSIONS" assets.kernel.debian.flavour)" = amd64 ] || fail "versions.sh: assets.kernel.debian.flavour"
[ "$("$VERSIONS" externals.containerd.version)" = "$(grep -A3 '^  containerd:' "$REPO/versions.yaml" | sed -n 's/.*version: "\(.*\)"/\1/p')" ] ||
  fail "versions.sh: externals.containerd.version"
if "$VERSIONS" assets.kernel.no-such-key 2>/dev/null; then fail "versions.sh found a key that does not exist"; fi

K=$("$FETCH_KERNEL")
abi=$("$VERSIONS" assets.kernel.debian.abi)
[ "$K" = "${KATA_CACHE_DIR:-/var/cache/kata-cpp}/kernel/debian-$abi" ] || fail "unexpected kernel dir $K"
for f in vmlinux vmlinuz config release source; do [ -s "$K/$f" ] || fail "$K/$f missing"; done
release=$(cat "$K/release")
[[ $release == "$abi-"* ]] || fail "release $release does not match the pinned ABI $abi"

# ELF + PVH note, checked here independently of the script's own check.
[ "$(head -c 4 "$K/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] || fail "$K/vmlinux is not an ELF file"
readelf -h "$K/vmlinux" | grep -q 'Type:.*EXEC' || fail "$K/vmlinux is not an executable ELF"
readelf -nW "$K/vmlinux" | grep -E '^[[:space:]]*Xen' | grep -q '0x00000012' ||
  fail "$K/vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY (PVH) note"
grep -q '^CONFIG_PVH=y' "$K/config" || fail "$K/config lacks CONFIG_PVH=y"

# Modules: every name of guest-modules.list (minus optional ones) and the closure of deps.
mods="$K/modules/lib/modules/$release"
[ -s "$mods/modules.dep" ] || fail "$mods/modules.dep missing"
while read -r name opt; do
  file=$(find "$mods" -name "${name}.ko" -o -name "${name//_/-}.ko" | head -n1)
  if [ -z "$file" ] && [ "$opt" != optional ]; then fail "module $name missing from $mods"; fi
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$REPO/tools/packaging/kernel/guest-modules.list")
while read -r line; do
  for dep in ${line#*:}; do [ -f "$mods/$dep" ] || fail "dependency $dep (of ${line%%:*}) missing"; done
done <"$mods/modules.dep"
for m in virtio_ring virtio_pci_modern_dev net_failover failover 9pnet jbd2 mbcache crc16 vmw_vsock_virtio_transport_common; do
  find "$mods" -name "$m.ko" | grep -q . || fail "expected dependency $m.ko not pulled in"
done
pass "kernel $release: ELF with PVH note, $(find "$mods" -name '*.ko' | wc -l) modules with their dependencies"

start=$(now)
[ "$("$FETCH_KERNEL" 2>/dev/null)" = "$K" ] || fail "second run printed another dir"
took=$(elapsed "$start")
awk -v t="$took" 'BEGIN { exit !(t < 3) }' || fail "cached run took ${took}s"
pass "cached run ${took}s"

# A pin that is not in the archive: a clear failure, or follow the meta package with
# KATA_KERNEL_FOLLOW_LATEST=1 (in a private cache sharing the downloaded .debs).
sed 's/package-version: "[^"]*"/package-version: "0.0.0-gone"/' "$REPO/versions.yaml" >"$T/versions.yaml"
mkdir -p "$T/cache"
ln -s "${KATA_CACHE_DIR:-/var/cache/kata-cpp}/debs" "$T/cache/debs"
expect_fail "$T/err" env KATA_VERSIONS_FILE="$T/versions.yaml" KATA_CACHE_DIR="$T/cache" "$FETCH_KERNEL"
grep -q "linux-image-$abi-amd64=0.0.0-gone" "$T/err" || { cat "$T/err" >&2; fail "the error does not name the pin"; }
[ ! -e "$T/cache/kernel/debian-$abi" ] || fail "a failed fetch left an output dir"
pass "gone pin: $(head -n1 "$T/err" | cut -c1-120)..."

K2=$(KATA_VERSIONS_FILE="$T/versions.yaml" KATA_CACHE_DIR="$T/cache" KATA_KERNEL_FOLLOW_LATEST=1 "$FETCH_KERNEL" 2>"$T/err")
grep -q "warning: pinned kernel" "$T/err" || { cat "$T/err" >&2; fail "following the latest kernel did not warn"; }
grep -q "^followed_latest=yes" "$K2/source" || fail "$K2/source does not record that the latest kernel was followed"
grep -q "^pinned=linux-image-$abi-amd64=0.0.0-gone" "$K2/source" || fail "$K2/source does not record the pin"
pass "followed $(sed -n 's/^package=//p' "$K2/source")=$(sed -n 's/^version=//p' "$K2/source") with a warning"
# Reproducible: when that is the same package, the module tree is byte-identical.
if [ "$(sed -n 's/^version=//p' "$K2/source")" = "$(sed -n 's/^version=//p' "$K/source")" ]; then
  diff -r "$K/modules" "$K2/modules" >/dev/null || fail "two fetches of the same package gave different module trees"
  cmp "$K/vmlinux" "$K2/vmlinux" || fail "two fetches of the same package gave different vmlinux"
  pass "two fetches of the same package are byte-identical"
fi
