#!/usr/bin/env bash
# make-test-guest.sh OUTDIR: a guest for the hypervisor VM tests.
#   OUTDIR/kernel   Debian's guest kernel (uncompressed vmlinux when the packaging script
#                   provides one, else Debian's vmlinuz)
#   OUTDIR/initrd   busybox-static with an /init that prints markers on the console, loads the
#                   virtio/9p modules when the kernel comes with them (the packaging script's
#                   modules/ tree), mounts the kataShared 9p share, and writes to the
#                   agent.channel.0 virtio-serial port every second
# The kernel comes from tools/packaging/kernel/fetch-debian-kernel.sh (cached under
# $KATA_CACHE_DIR); if that script is missing or fails, from `apt-get download` into the cache.
set -euo pipefail
out=${1:?usage: make-test-guest.sh OUTDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
cache=${KATA_CACHE_DIR:-/var/cache/kata-cpp}
mkdir -p "$out"

kernel=""
moddir=""
fetch="$repo/tools/packaging/kernel/fetch-debian-kernel.sh"
if [ -x "$fetch" ] || [ -f "$fetch" ]; then
  if dir=$(bash "$fetch" 2>"$out/fetch-kernel.log" | tail -n1) && [ -n "$dir" ]; then
    for f in vmlinux vmlinuz; do
      if [ -s "$dir/$f" ]; then kernel="$dir/$f"; break; fi
    done
    if [ -f "$dir/release" ] && [ -f "$dir/modules/lib/modules/$(cat "$dir/release")/modules.dep" ]; then
      moddir="$dir/modules/lib/modules/$(cat "$dir/release")"
    fi
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
    vmlinuz=("$work"/x/boot/vmlinuz-*)
    cp "${vmlinuz[0]}" "$kdir/vmlinuz.tmp"
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
# Guest modules for the agent channel and the share, dependencies first (from modules.dep).
: >"$root/modules.order"
if [ -n "$moddir" ]; then
  declare -A deps=() seen=()
  while IFS= read -r line; do deps[${line%%:*}]=${line#*:}; done <"$moddir/modules.dep"
  visit() {
    local m=$1 d
    [ -n "${seen[$m]:-}" ] && return
    seen[$m]=1
    for d in ${deps[$m]}; do visit "$d"; done
    mkdir -p "$root/lib/modules/$(dirname "$m")"
    cp "$moddir/$m" "$root/lib/modules/$m"
    echo "$m" >>"$root/modules.order"
  }
  for name in virtio_pci virtio_console 9pnet_virtio 9p; do
    path=$(grep -E "(^|/)$name\.ko:" "$moddir/modules.dep" | cut -d: -f1 || true)
    [ -n "$path" ] && visit "$path"
  done
fi
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.order); do $B insmod "/lib/modules/$m" || echo "insmod $m failed"; done
echo "kata-hypervisor-test: init running on $($B uname -r)"
$B mkdir -p /mnt
# A mounted 9p share blocks migration, so a template guest is booted with kata_test.no9p.
if ! $B grep -q kata_test.no9p /proc/cmdline &&
  $B mount -t 9p -o trans=virtio,version=9p2000.L kataShared /mnt 2>/dev/null; then
  echo "from-guest" >/mnt/guest-wrote
  echo "kata-hypervisor-test: share says $($B cat /mnt/host-wrote)"
fi
port=""
for d in /sys/class/virtio-ports/*; do
  [ "$($B cat "$d/name" 2>/dev/null)" = agent.channel.0 ] && port=/dev/$($B basename "$d")
done
echo "kata-hypervisor-test: agent port ${port:-none}"
while true; do
  if [ -n "$port" ]; then
    $B timeout 1 $B sh -c "echo 'kata-hypervisor-test: hello over agent.channel.0' >$port" 2>/dev/null
  fi
  $B sleep 1
done
INIT
chmod 0755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initrd"
rm -rf "$root"
echo "$out"
