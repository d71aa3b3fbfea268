#!/usr/bin/env bash
# build-payload.sh: build the kata-deploy payload image (OCI, with umoci; no docker) and push
# it with skopeo.
#
#   build-payload.sh (--from-dir DIR | --from-tarball FILE) --installer PATH
#                    (--push DEST | --oci-dir DIR) [--tag TAG] [--add-binary PATH]...
#                    [--dest-creds USER:PASS] [--dest-authfile FILE]
#                    [--dest-cert-dir DIR] [--dest-tls-verify true|false]
#
#   --from-dir DIR       a tree in the /opt/kata layout (bin/containerd-shim-kata-v2,
#                        share/kata-containers/, share/defaults/kata-containers/), e.g. what
#                        `make install PREFIX=/opt/kata DESTDIR=...` leaves under opt/kata
#   --from-tarball FILE  a release tarball (kata-static-<version>-x86_64.tar.xz) holding
#                        opt/kata/ (or the layout at its top)
#   --installer PATH     the kata-deploy binary (src/tools/kata-deploy), with its libraries
#   --push DEST          where skopeo copies the image: docker://host/repo:tag,
#                        oci-archive:FILE, ...; a bare host/repo:tag means docker://
#   --oci-dir DIR        also (or instead) keep the OCI layout in DIR (tag TAG, default latest)
#   --add-binary PATH    another host binary (with its libraries) at the same path in the image
#   --dest-*             passed to skopeo copy (credentials, CA dir, TLS verification)
#
# The image: /opt/kata-artifacts/ is the payload (kata-deploy's default --payload-dir),
# /usr/bin/kata-deploy the installer, /bin/busybox (static) with its applets for the restart
# command (sh, nsenter). Entrypoint kata-deploy, command `install --wait`. The files are
# owned by root and stamped SOURCE_DATE_EPOCH (default 1), so the same inputs give the same
# layer.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=build-payload
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

from_dir="" from_tarball="" installer="" push="" oci_dir="" tag=latest
add_bins=() skopeo_dest=()
while (($#)); do
  case $1 in
    --from-dir) from_dir=${2:?--from-dir DIR}; shift 2 ;;
    --from-tarball) from_tarball=${2:?--from-tarball FILE}; shift 2 ;;
    --installer) installer=${2:?--installer PATH}; shift 2 ;;
    --push) push=${2:?--push DEST}; shift 2 ;;
    --oci-dir) oci_dir=${2:?--oci-dir DIR}; shift 2 ;;
    --tag) tag=${2:?--tag TAG}; shift 2 ;;
    --add-binary) add_bins+=("${2:?--add-binary PATH}"); shift 2 ;;
    --dest-creds) skopeo_dest+=("--dest-creds=${2:?--dest-creds USER:PASS}"); shift 2 ;;
    --dest-authfile) skopeo_dest+=("--dest-authfile=${2:?--dest-authfile FILE}"); shift 2 ;;
    --dest-cert-dir) skopeo_dest+=("--dest-cert-dir=${2:?--dest-cert-dir DIR}"); shift 2 ;;
    --dest-tls-verify) skopeo_dest+=("--dest-tls-verify=${2:?--dest-tls-verify true|false}"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) kata_die "unknown argument $1 (see --help)" ;;
  esac
done

kata_need_cmd umoci:umoci skopeo:skopeo
[ -n "$from_dir" ] || [ -n "$from_tarball" ] || kata_die "--from-dir DIR or --from-tarball FILE is required"
[ -z "$from_dir" ] || [ -z "$from_tarball" ] || kata_die "--from-dir and --from-tarball exclude each other"
[ -n "$installer" ] || kata_die "--installer PATH is required"
{ [ -f "$installer" ] && [ -x "$installer" ]; } || kata_die "installer $installer: not an executable file"
[ -n "$push" ] || [ -n "$oci_dir" ] || kata_die "--push DEST or --oci-dir DIR is required"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || kata_die "--tag $tag: not a valid image tag"
for b in ${add_bins[@]+"${add_bins[@]}"}; do
  { [[ $b == /* ]] && [ -x "$b" ]; } || kata_die "--add-binary $b: not an executable at an absolute path"
done
busybox=${KATA_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || kata_die "busybox $busybox: not found (apt-get install busybox-static)"

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/build-payload.XXXXXX") || kata_die "cannot create a temp dir"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

if [ -n "$from_tarball" ]; then
  [ -f "$from_tarball" ] || kata_die "--from-tarball $from_tarball: no such file"
  mkdir "$work/tarball"
  tar -xf "$from_tarball" -C "$work/tarball" || kata_die "--from-tarball $from_tarball: tar cannot unpack it"
  if [ -d "$work/tarball/opt/kata" ]; then from_dir=$work/tarball/opt/kata; else from_dir=$work/tarball; fi
fi
[ -d "$from_dir" ] || kata_die "payload $from_dir: no such directory"
[ -x "$from_dir/bin/containerd-shim-kata-v2" ] ||
  kata_die "payload $from_dir: bin/containerd-shim-kata-v2 is missing: not a tree in the /opt/kata layout"
[ -d "$from_dir/share/defaults/kata-containers" ] ||
  kata_die "payload $from_dir: share/defaults/kata-containers is missing: not a tree in the /opt/kata layout"

# copy_binary SRC DST ROOTFS: a binary and, when dynamic, its libraries at the paths ldd names.
copy_binary() {
  local src=$1 dst=$2 root=$3 lib
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
  chmod 0755 "$root$dst"
  if readelf -lW "$src" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    while read -r lib; do
      { [ -n "$lib" ] && [ ! -e "$root$lib" ]; } || continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done < <(ldd "$src" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | LC_ALL=C sort -u)
  fi
}

image="$work/oci:$tag"
umoci init --layout "$work/oci"
umoci new --image "$image"
umoci unpack --rootless --image "$image" "$work/bundle" >/dev/null
root=$work/bundle/rootfs
mkdir -p "$root/opt/kata-artifacts" "$root/bin" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp -a "$from_dir/." "$root/opt/kata-artifacts/"
copy_binary "$installer" /usr/bin/kata-deploy "$root"
cp -L "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
  [ -e "$root/$applet" ] || { mkdir -p "$root/$(dirname "$applet")"; ln -s /bin/busybox "$root/$applet"; }
done
for b in ${add_bins[@]+"${add_bins[@]}"}; do copy_binary "$b" "$b" "$root"; done
# Reproducible layer: one owner, one time stamp.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
version=unknown
[ -r "$from_dir/VERSION" ] && version=$(head -n1 "$from_dir/VERSION")
umoci repack --image "$image" "$work/bundle" >/dev/null
umoci config --image "$image" --config.entrypoint /usr/bin/kata-deploy \
  --config.cmd install --config.cmd --wait \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PAYLOAD_DIR=/opt/kata-artifacts \
  --config.label "org.opencontainers.image.title=kata-deploy" \
  --config.label "io.katacontainers.payload.version=$version" \
  --created "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
umoci gc --layout "$work/oci"
kata_info "payload image built from $from_dir ($(du -sh "$root" | cut -f1), version $version)"

if [ -n "$oci_dir" ]; then
  mkdir -p "$oci_dir"
  skopeo copy --quiet "oci:$image" "oci:$oci_dir:$tag" || kata_die "copying the image to $oci_dir failed"
  kata_info "OCI layout $oci_dir, tag $tag"
fi
if [ -n "$push" ]; then
  case $push in
    docker://* | oci:* | oci-archive:* | dir:* | docker-archive:*) dest=$push ;;
    *) dest=docker://$push ;;
  esac
  skopeo copy --quiet ${skopeo_dest[@]+"${skopeo_dest[@]}"} "oci:$image" "$dest" ||
    kata_die "pushing the payload image to $dest failed (skopeo copy, see above)"
  kata_info "pushed $dest"
fi
