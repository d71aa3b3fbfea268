#!/usr/bin/env bash
# build-kernel.sh: build the minimal guest kernel (no modules) from Debian's kernel source
# and print its directory, laid out like fetch-debian-kernel.sh's:
#
#   $KATA_CACHE_DIR/kernel/minimal-<source version>-<key>/
#     vmlinux  config  release  modules/ (empty)  source
#
# Recipe: linux-source-<series> at the version pinned in versions.yaml
# (assets.kernel-minimal), patches from patches/<major.minor>.x/*.patch applied in sort
# order, `make tinyconfig`, the fragments configs/fragments/*.conf merged in sort order,
# `make olddefconfig`, `make vmlinux`. <key> hashes the source version, fragments, patches
# and the recipe version in this script: change any of them and the next run rebuilds;
# otherwise it returns at once. The build takes about 9 minutes on 2 cores.
#
# --print-dir prints the output directory for the current recipe without building.
# Environment: KATA_CACHE_DIR, KATA_KERNEL_JOBS (default 2), KATA_KEEP_BUILD=1 keeps the
# build tree, KATA_VERSIONS_FILE.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=build-kernel
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

print_dir=0
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  --print-dir) print_dir=1 ;; # the output dir for the current recipe, built or not
  "") ;;
  *) kata_die "unexpected argument: $1 (see --help)" ;;
esac

kata_need_cmd apt-get:apt dpkg-deb:dpkg make:make gcc:gcc flex:flex bison:bison bc:bc \
  xz:xz-utils patch:patch readelf:binutils flock:util-linux
[ -r /usr/include/libelf.h ] || [ -r /usr/include/gelf.h ] ||
  kata_die "libelf headers missing (apt-get install libelf-dev; objtool needs them)"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src_pkg=$(kata_version assets.kernel-minimal.source-package)
src_ver=$(kata_version assets.kernel-minimal.source-version)
series=$(kata_version assets.kernel-minimal.patch-series)
jobs=${KATA_KERNEL_JOBS:-2}

mapfile -t fragments < <(find "$here/configs/fragments" -maxdepth 1 -name '*.conf' | LC_ALL=C sort)
((${#fragments[@]})) || kata_die "no config fragments in $here/configs/fragments"
patch_dir="$here/patches/$series"
mapfile -t patches < <(find "$patch_dir" -maxdepth 1 -name '*.patch' 2>/dev/null | LC_ALL=C sort)

# Bump when the build steps below change in a way that changes the kernel.
recipe_version=1
key=$( {
  echo "$src_pkg=$src_ver recipe=$recipe_version"
  kata_hash "${fragments[@]}" ${patches[@]+"${patches[@]}"}
} | sha256sum | cut -c1-12)
out="$KATA_CACHE_DIR/kernel/minimal-$src_ver-$key"
if [ "$print_dir" = 1 ]; then
  echo "$out"
  exit 0
fi
if [ -f "$out/.stamp" ]; then
  echo "$out"
  exit 0
fi

kata_lock "kernel-minimal-$key"
if [ -f "$out/.stamp" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$KATA_CACHE_DIR/kernel" "$KATA_CACHE_DIR/debs"
work=$(mktemp -d "$KATA_CACHE_DIR/kernel/.build.XXXXXX") || kata_die "cannot create a build dir in $KATA_CACHE_DIR/kernel"
if [ "${KATA_KEEP_BUILD:-0}" = 1 ]; then
  trap 'kata_info "build tree kept in $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

deb="$KATA_CACHE_DIR/debs/${src_pkg}_${src_ver#*:}_all.deb"
if [ ! -s "$deb" ]; then
  if ! kata_apt_has "$src_pkg" "$src_ver"; then
    kata_die "the pinned kernel source $src_pkg=$src_ver (versions.yaml assets.kernel-minimal) is not in the apt archive; update the pin (apt-cache policy $src_pkg)"
  fi
  kata_info "downloading $src_pkg=$src_ver"
  mkdir -p "$work/dl" && chmod 0777 "$work/dl"
  (cd "$work/dl" && apt-get download -q "$src_pkg=$src_ver" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
    kata_die "apt-get download $src_pkg=$src_ver failed"
  mv "$(find "$work/dl" -name '*.deb' | head -n1)" "$deb.tmp" && mv "$deb.tmp" "$deb"
fi

kata_info "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$work/deb" || kata_die "dpkg-deb -x $deb failed"
tarball=$(find "$work/deb/usr/src" -maxdepth 1 -name 'linux-source-*.tar.*' | head -n1)
[ -n "$tarball" ] || kata_die "$deb has no usr/src/linux-source-*.tar.*"
tar -C "$work" -xf "$tarball" || kata_die "cannot unpack $tarball"
rm -rf "$work/deb"
ksrc=$(find "$work" -maxdepth 1 -type d -name 'linux-source-*' | head -n1)
[ -n "$ksrc" ] || kata_die "$tarball did not unpack to linux-source-*"

for p in ${patches[@]+"${patches[@]}"}; do
  kata_info "applying $(basename "$p")"
  patch -d "$ksrc" -p1 --forward --quiet <"$p" || kata_die "patch $p does not apply to $src_pkg=$src_ver"
done

export KBUILD_BUILD_TIMESTAMP="@${SOURCE_DATE_EPOCH:-0}" KBUILD_BUILD_USER=kata KBUILD_BUILD_HOST=kata-cpp KBUILD_BUILD_VERSION=1
mk() { make -C "$ksrc" ARCH=x86_64 "$@"; }
kata_info "configuring: tinyconfig + ${#fragments[@]} fragments"
mk -s tinyconfig >/dev/null
(cd "$ksrc" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "${fragments[@]}" >"$work/merge.log" 2>&1) ||
  kata_die "merging the config fragments failed (see $work/merge.log; KATA_KEEP_BUILD=1 keeps it)"
mk -s olddefconfig >/dev/null
# Report requested options that Kconfig dropped (unmet dependencies, renamed symbols).
dropped=$(cat "${fragments[@]}" | sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=\(.*\)$/\1=\2/p' | while IFS= read -r want; do
  sym=${want%%=*} val=${want#*=}
  if [ "$val" = n ]; then
    grep -q "^$sym=[ym]" "$ksrc/.config" && echo "$sym (wanted n)"
  else
    grep -qxF "$want" "$ksrc/.config" || echo "$sym (wanted $val, got $(grep -E "^$sym=|^# $sym is not set" "$ksrc/.config" || echo unset))"
  fi
done || true)
[ -z "$dropped" ] || kata_warn "config options not as requested: $(tr '\n' ';' <<<"$dropped")"
for must in CONFIG_PVH CONFIG_VIRTIO_PCI CONFIG_VIRTIO_CONSOLE CONFIG_SERIAL_8250_CONSOLE CONFIG_BLK_DEV_INITRD \
  CONFIG_DEVTMPFS CONFIG_9P_FS CONFIG_NET_9P_VIRTIO CONFIG_VIRTIO_BLK CONFIG_EXT4_FS CONFIG_OVERLAY_FS CONFIG_BINFMT_SCRIPT; do
  grep -q "^$must=y" "$ksrc/.config" || kata_die "the merged config lacks $must=y; check the fragments in $here/configs/fragments"
done

kata_info "building vmlinux with -j$jobs (about 9 minutes on 2 cores); log: $work/build.log"
start=$(date +%s)
mk -j"$jobs" vmlinux >"$work/build.log" 2>&1 || {
  tail -n 30 "$work/build.log" >&2
  kata_die "kernel build failed (KATA_KEEP_BUILD=1 keeps $work)"
}
kata_info "built in $(($(date +%s) - start)) s"

stage="$work/out"
mkdir -p "$stage/modules"
cp "$ksrc/vmlinux" "$stage/vmlinux"
strip --strip-debug "$stage/vmlinux" 2>/dev/null || true
cp "$ksrc/.config" "$stage/config"
mk -s kernelrelease >"$stage/release"
kata_check_pvh "$stage/vmlinux"
{
  echo "source_package=$src_pkg"
  echo "source_version=$src_ver"
  echo "fragments=$(for f in "${fragments[@]}"; do basename "$f"; done | tr '\n' ' ')"
  echo "patches=$(for p in ${patches[@]+"${patches[@]}"}; do basename "$p"; done | tr '\n' ' ')"
  echo "key=$key"
} >"$stage/source"
echo "$key" >"$stage/.stamp"
rm -rf "$out"
mv "$stage" "$out"
kata_info "minimal kernel $(cat "$out/release") ready in $out"
echo "$out"
