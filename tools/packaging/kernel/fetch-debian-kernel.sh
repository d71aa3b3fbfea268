#!/usr/bin/env bash
# fetch-debian-kernel.sh: put Debian's guest kernel, pinned in versions.yaml, into the cache
# as a directory QEMU and osbuilder can use directly, and print that directory on stdout:
#
#   $KATA_CACHE_DIR/kernel/debian-<abi>/
#     vmlinux    uncompressed ELF (booted through its PVH entry with -kernel)
#     vmlinuz    Debian's compressed bzImage, as shipped
#     config     the kernel's .config
#     release    uname -r of the kernel (e.g. 6.1.0-56-amd64)
#     modules/lib/modules/<release>/   the guest modules (guest-modules.list) and their
#                dependencies, with modules.dep made by depmod -b
#     source     what was used: package, version, sha256 of the .deb, pin, followed latest?
#
# Environment:
#   KATA_CACHE_DIR               cache root (default /var/cache/kata-cpp)
#   KATA_KERNEL_FOLLOW_LATEST=1  when the pinned package has left the archive, use the one
#                                the meta package (linux-image-amd64) depends on, with a warning
#   KATA_VERSIONS_FILE           another versions.yaml (tests)
#
# A second run with the same pin, module list and script returns at once.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=fetch-debian-kernel
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}
case ${1:-} in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; kata_die "unexpected argument: $1" ;;
esac

kata_need_cmd apt-get:apt apt-cache:apt dpkg-deb:dpkg depmod:kmod xz:xz-utils zstd:zstd \
  readelf:binutils flock:util-linux sha256sum:coreutils

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module_list="$here/guest-modules.list"
[ -r "$module_list" ] || kata_die "cannot read the module list $module_list"

pin_abi=$(kata_version assets.kernel.debian.abi)
flavour=$(kata_version assets.kernel.debian.flavour)
pin_pkg=$(kata_version assets.kernel.debian.package)
pin_ver=$(kata_version assets.kernel.debian.package-version)
meta_pkg=$(kata_version assets.kernel.debian.meta-package)
[ "$pin_pkg" = "linux-image-$pin_abi-$flavour" ] ||
  kata_die "versions.yaml: assets.kernel.debian.package ($pin_pkg) does not match abi/flavour (linux-image-$pin_abi-$flavour)"

# Everything that shapes the output directory, besides the package itself.
recipe_hash=$(kata_hash "$module_list" "$0" "$KATA_REPO_ROOT/tools/packaging/scripts/lib.sh")

stamp_matches() { # DIR PKG VER
  [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "package=$2 version=$3 recipe=$recipe_hash" ]
}

pin_out="$KATA_CACHE_DIR/kernel/debian-$pin_abi"
if stamp_matches "$pin_out" "$pin_pkg" "$pin_ver"; then
  echo "$pin_out"
  exit 0
fi

# Resolve the package to use.
pkg=$pin_pkg ver=$pin_ver abi=$pin_abi followed=no
if ! kata_apt_has "$pkg" "$ver"; then
  if [ "${KATA_KERNEL_FOLLOW_LATEST:-0}" != 1 ]; then
    kata_die "the pinned guest kernel $pin_pkg=$pin_ver (versions.yaml assets.kernel.debian) is not in the apt archive any more (apt-cache show $pin_pkg=$pin_ver found nothing; run apt-get update?). Update the pin in versions.yaml (apt-cache depends $meta_pkg shows the current one) or set KATA_KERNEL_FOLLOW_LATEST=1 to use that one."
  fi
  pkg=$(apt-cache depends "$meta_pkg" 2>/dev/null | awk '/Depends: linux-image-/ && !found { print $2; found = 1 }')
  [ -n "$pkg" ] || kata_die "cannot resolve the kernel package $meta_pkg depends on (apt-cache depends $meta_pkg)"
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ && !found { print $2; found = 1 }')
  { [ -n "$ver" ] && [ "$ver" != "(none)" ]; } || kata_die "no installable version of $pkg (apt-cache policy $pkg)"
  abi=${pkg#linux-image-}; abi=${abi%-"$flavour"}
  followed=yes
  kata_warn "pinned kernel $pin_pkg=$pin_ver is gone from the archive; following $meta_pkg: using $pkg=$ver (KATA_KERNEL_FOLLOW_LATEST=1). Update versions.yaml to pin it."
fi

out="$KATA_CACHE_DIR/kernel/debian-$abi"
kata_lock "kernel-debian-$abi"
if stamp_matches "$out" "$pkg" "$ver"; then # built by a concurrent run while we waited
  echo "$out"
  exit 0
fi

mkdir -p "$KATA_CACHE_DIR/kernel" "$KATA_CACHE_DIR/debs" || kata_die "cannot create $KATA_CACHE_DIR/kernel"
work=$(mktemp -d "$KATA_CACHE_DIR/kernel/.work.XXXXXX") || kata_die "cannot create a temp dir in $KATA_CACHE_DIR/kernel"
trap 'rm -rf "$work"' EXIT

# apt-get download names the file <pkg>_<version without epoch>_<arch>.deb.
deb="$KATA_CACHE_DIR/debs/${pkg}_${ver#*:}_amd64.deb"
if [ ! -s "$deb" ]; then
  kata_info "downloading $pkg=$ver"
  mkdir -p "$work/dl"
  chmod 0777 "$work/dl" # lets apt's sandbox user write there
  (cd "$work/dl" && apt-get download -q "$pkg=$ver" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
    kata_die "apt-get download $pkg=$ver failed"
  dl=$(find "$work/dl" -name '*.deb' | head -n1)
  [ -n "$dl" ] || kata_die "apt-get download $pkg=$ver produced no .deb"
  mv "$dl" "$deb.tmp" && mv "$deb.tmp" "$deb"
fi
deb_sha=$(sha256sum "$deb" | cut -d' ' -f1)

kata_info "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/x" || kata_die "dpkg-deb -x $deb failed"
release=$(find "$work/x/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n1)
[ -n "$release" ] || kata_die "$deb has no lib/modules/<release> directory"
vmlinuz="$work/x/boot/vmlinuz-$release"
[ -f "$vmlinuz" ] || kata_die "$deb has no boot/vmlinuz-$release"

stage="$work/out"
mkdir -p "$stage/modules/lib/modules/$release"
cp "$vmlinuz" "$stage/vmlinuz"
cp "$work/x/boot/config-$release" "$stage/config"
echo "$release" >"$stage/release"

kata_info "extracting the uncompressed vmlinux"
kata_extract_vmlinux "$stage/vmlinuz" "$stage/vmlinux"
kata_check_pvh "$stage/vmlinux"

# Modules: decompress if the distribution compresses them, index the whole tree, take the
# closure of the list, index that subset.
full="$work/x/lib/modules/$release"
find "$full" -name '*.ko.xz' -exec xz -d {} +
find "$full" -name '*.ko.zst' -exec zstd -dq --rm {} +
depmod -b "$work/x" "$release" || kata_die "depmod -b $work/x $release failed"

mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$module_list")
closure=$(awk -v list="${wanted[*]//$'\n'/ }" '
  function norm(s) { gsub(/-/, "_", s); return s }
  function add(p,   n, d, i) {
    if (p in taken) return
    taken[p] = 1
    n = split(deps[p], d, " ")
    for (i = 1; i <= n; i++) add(d[i])
  }
  {
    p = $1; sub(/:$/, "", p)
    rest = $0; sub(/^[^:]*:[[:space:]]*/, "", rest); deps[p] = rest
    name = p; sub(/.*\//, "", name); sub(/\.ko$/, "", name); path[norm(name)] = p
  }
  END {
    n = split(list, w, " ")
    for (i = 1; i <= n; i++) {
      name = norm(w[i])
      if (name == "optional") continue
      optional = (i < n && w[i + 1] == "optional")
      if (name in path) add(path[name])
      else if (optional) print "skip " w[i]
      else print "missing " w[i]
    }
    for (p in taken) print "take " p
  }' "$full/modules.dep")
missing=$(awk '$1 == "missing" { print $2 }' <<<"$closure")
if [ -n "$missing" ]; then
  # A built-in module is fine: modules.builtin lists it.
  for m in $missing; do
    grep -Eq "/${m//_/[-_]}\.ko$" "$full/modules.builtin" ||
      kata_die "kernel $pkg=$ver has no module $m (needed by $module_list) and does not build it in"
  done
fi
while read -r m; do
  kata_info "optional module $m not in $pkg; skipped"
done < <(awk '$1 == "skip" { print $2 }' <<<"$closure")
while read -r rel; do
  mkdir -p "$stage/modules/lib/modules/$release/$(dirname "$rel")"
  cp "$full/$rel" "$stage/modules/lib/modules/$release/$rel"
done < <(awk '$1 == "take" { print $2 }' <<<"$closure" | LC_ALL=C sort)
for f in modules.builtin modules.builtin.modinfo; do
  [ -f "$full/$f" ] && cp "$full/$f" "$stage/modules/lib/modules/$release/$f"
done
# modules.order restricted to the modules taken (depmod wants it; modprobe uses it for ties).
if [ -f "$full/modules.order" ]; then
  (cd "$stage/modules/lib/modules/$release" && find kernel -name '*.ko' | LC_ALL=C sort) |
    awk 'NR == FNR { have[$0] = 1; next } $0 in have' - "$full/modules.order" \
      >"$stage/modules/lib/modules/$release/modules.order"
fi
depmod -b "$stage/modules" "$release" || kata_die "depmod -b $stage/modules $release failed"
nmod=$(find "$stage/modules" -name '*.ko' | wc -l)

{
  echo "package=$pkg"
  echo "version=$ver"
  echo "deb_sha256=$deb_sha"
  echo "release=$release"
  echo "pinned=$pin_pkg=$pin_ver"
  echo "followed_latest=$followed"
  echo "modules=$nmod"
} >"$stage/source"
echo "package=$pkg version=$ver recipe=$recipe_hash" >"$stage/.stamp"

rm -rf "$out"
mv "$stage" "$out"
kata_info "kernel $release ($pkg=$ver, $nmod modules) ready in $out"
echo "$out"
