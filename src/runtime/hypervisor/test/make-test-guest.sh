#!/usr/bin/env bash
# make-test-guest.sh OUTDIR: a guest for the hypervisor VM tests.
#   OUTDIR/kernel   Debian's guest kernel (uncompressed vmlinux when the packaging script
#                   provides one, else Debian's vmlinuz)
#   OUTDIR/initrd   busybox-static with an /init that prints a marker and sleeps
# The kernel comes from tools/packaging/kernel/fetch-debian-kernel.sh (cached under
# $KATA_CACHE_DIR); if that script is missing or fails, from `apt-get download` into the cache.
set -euo pipefail
out=${1:?usage: make-test-guest.sh OUTDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
cache=${KATA_CACHE_DIR:-/var/cache/kata-cpp}
mkdir -p "$out"

kernel=""
fetch="$repo/tools/packaging/kernel/fetch-debian-kernel.sh"
if [ -x "$fetch" ] || [ -f "$fetch" ]; then
  if dir=$(bash "$fetch" 2>"$out/fetch-kernel.log" | tail -n1) && [ -n "$dir" ]; then
    for f in vmlinux vmlinuz; do
      if [ -s "$dir/$f" ]; then kernel="$dir/$f"; break; fi
    done
  else
    echo "make-test-guest: $fetch failed (see $out/fetch-kernel.log); downloading the kernel here" >&2
  fi
fi
if [ -z "$kernel" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
  [ -n "$pkg" ] || { echo "make-test-guest: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
  kdir="$cache/hypervisor-test/$pkg"
  if [ ! -s "$kdir/vmlinuz" ]; then
    mkdir -p "$cache/hypervisor-test"
    work=$(mktemp -d "$cache/hypervisor-test/.work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    chmod 0777 "$work"
    (cd "$work" && apt-get download -q "$pkg" >&2)
    dpkg-deb -x "$work"/*.deb "$work/x"
    mkdir -p "$kdir"
    cp "$(ls "$work"/x/boot/vmlinuz-* | head -n1)" "$kdir/vmlinuz.tmp"
    mv "$kdir/vmlinuz.tmp" "$kdir/vmlinuz"
  fi
  kernel="$kdir/vmlinuz"
fi
ln -sf "$kernel" "$out/kernel"

busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q "statically linked" || busybox=/bin/busybox
root="$out/initrd-root"
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$root/bin/busybox"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
echo "kata-hypervisor-test: init running on $(/bin/busybox uname -r)"
while true; do /bin/busybox sleep 1; done
INIT
chmod 0755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initrd"
rm -rf "$root"
echo "$out"
