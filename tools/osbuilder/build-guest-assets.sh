#!/usr/bin/env bash
# build-guest-assets.sh --agent PATH --out-dir DIR [--kernel debian|minimal]
#                       [--debug-console] [--image] [--compression none|gzip|zstd|xz]
#
# Everything a VM needs on the guest side, in one go: resolves the guest kernel (Debian's,
# fetched into the cache, or the minimal one built by build-kernel.sh; --kernel, else
# $KATA_GUEST_KERNEL, else minimal), builds the initrd
# (and with --image the ext4 rootfs image) around the agent, and writes into DIR:
#
#   vmlinux.container           the uncompressed kernel (booted through PVH)
#   kata-containers-initrd.img  the initrd
#   kata-containers.img         the rootfs image (--image only)
#
# and prints, one per line on stdout, key=value pairs for scripts:
#   kernel=DIR/vmlinux.container  initrd=DIR/kata-containers-initrd.img  [image=...]
#   kernel_dir=<cache dir of the kernel>  release=<uname -r of the guest>
#
# Nothing changed since the last run into the same DIR (same agent bytes, kernel, options
# and osbuilder scripts) means nothing is rebuilt.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=build-guest-assets
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../packaging/scripts/lib.sh
source "$here/../packaging/scripts/lib.sh"

agent="" out_dir="" kernel=${KATA_GUEST_KERNEL:-minimal} debug=0 image=0 comp=""
while (($#)); do
  case $1 in
    --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
    --out-dir) out_dir=${2:?--out-dir needs a DIR}; shift 2 ;;
    --kernel) kernel=${2:?--kernel needs debian or minimal}; shift 2 ;;
    --debug-console) debug=1; shift ;;
    --image) image=1; shift ;;
    --compression) comp=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) kata_die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$agent" ] || kata_die "--agent PATH is required"
[ -f "$agent" ] || kata_die "agent $agent: no such file"
[ -x "$agent" ] || kata_die "agent $agent: not executable"
[ -n "$out_dir" ] || kata_die "--out-dir DIR is required"
mkdir -p "$out_dir" || kata_die "cannot create $out_dir"
out_dir=$(cd "$out_dir" && pwd)
# Two runs into the same DIR (parallel tests) take turns.
exec {dir_lock}>"$out_dir/.guest-assets.lock" || kata_die "cannot create a lock file in $out_dir"
flock "$dir_lock"

case $kernel in
  debian) kdir=$("$here/../packaging/kernel/fetch-debian-kernel.sh") ;;
  minimal) kdir=$("$here/../packaging/kernel/build-kernel.sh") ;;
  *) kata_die "--kernel $kernel: expected debian or minimal" ;;
esac
[ -f "$kdir/vmlinux" ] || kata_die "kernel dir $kdir has no vmlinux"

# What the outputs depend on; the stamp in DIR remembers it.
key=$( {
  sha256sum <"$agent"
  cat "$kdir/.stamp" 2>/dev/null || cat "$kdir/source"
  echo "debug=$debug image=$image comp=$comp kernel=$kernel epoch=${SOURCE_DATE_EPOCH:-0} strip=${KATA_STRIP_AGENT:-1}"
  kata_hash "$here/osbuilder.sh" "$here/../packaging/scripts/lib.sh" "$KATA_REPO_ROOT/versions.yaml"
} | sha256sum | cut -d' ' -f1)

kernel_out="$out_dir/vmlinux.container"
initrd_out="$out_dir/kata-containers-initrd.img"
image_out="$out_dir/kata-containers.img"
stamp="$out_dir/.guest-assets.stamp"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && [ -f "$kernel_out" ] && [ -f "$initrd_out" ] &&
  { [ "$image" = 0 ] || [ -f "$image_out" ]; }; then
  kata_info "guest assets in $out_dir are up to date"
else
  rm -f "$stamp"
  if ! cmp -s "$kdir/vmlinux" "$kernel_out"; then
    cp "$kdir/vmlinux" "$kernel_out.tmp" && mv -f "$kernel_out.tmp" "$kernel_out"
  fi
  args=(--agent "$agent" --kernel-dir "$kdir")
  [ "$debug" = 1 ] && args+=(--debug-console)
  initrd_args=("${args[@]}")
  [ -n "$comp" ] && initrd_args+=(--compression "$comp")
  "$here/osbuilder.sh" initrd "${initrd_args[@]}" --out "$initrd_out" >/dev/null
  if [ "$image" = 1 ]; then
    "$here/osbuilder.sh" image "${args[@]}" --out "$image_out" >/dev/null
  fi
  echo "$key" >"$stamp"
fi

echo "kernel=$kernel_out"
echo "initrd=$initrd_out"
[ "$image" = 1 ] && echo "image=$image_out"
echo "kernel_dir=$kdir"
echo "release=$(cat "$kdir/release")"
