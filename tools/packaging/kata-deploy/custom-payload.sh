#!/usr/bin/env bash
# custom-payload.sh: make a custom payload image from an existing one: pull it, replace files
# (a QEMU, a shim, a configuration) or the agent inside the guest initrd/image, rebuild, push.
# Point the kata-deploy DaemonSet at the result with the payload ConfigMap (daemon.payload);
# the installer then logs that the installation is tainted by a custom payload.
#
#   custom-payload.sh --from SRC --push DEST [--replace FILE:PATH]... [--agent FILE]
#                     [--src-creds USER:PASS] [--src-cert-dir DIR] [--src-tls-verify BOOL]
#                     [--dest-creds USER:PASS] [--dest-cert-dir DIR] [--dest-tls-verify BOOL]
#
#   --from SRC           the payload image to start from (docker://host/repo:tag, oci-archive:..;
#                        a bare host/repo:tag means docker://)
#   --push DEST          where the custom image goes (same forms)
#   --replace FILE:PATH  put FILE at PATH inside the payload (relative to the /opt/kata layout,
#                        e.g. bin/qemu-system-x86_64 or bin/containerd-shim-kata-v2)
#   --agent FILE         swap FILE in as the kata-agent of every guest initrd/image of the
#                        payload (share/kata-containers/*.img; osbuilder.sh replace-agent)
#
# Only files are replaced: the result keeps the source's layout, entrypoint and installer.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=custom-payload
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
transport() { case $1 in docker://* | oci:* | oci-archive:* | dir:* | docker-archive:*) echo "$1" ;; *) echo "docker://$1" ;; esac; }

from="" push="" agent="" replaces=() src_opts=() dest_opts=()
while (($#)); do
  case $1 in
    --from) from=${2:?--from SRC}; shift 2 ;;
    --push) push=${2:?--push DEST}; shift 2 ;;
    --replace) replaces+=("${2:?--replace FILE:PATH}"); shift 2 ;;
    --agent) agent=${2:?--agent FILE}; shift 2 ;;
    --src-creds) src_opts+=("--src-creds=${2:?}"); shift 2 ;;
    --src-cert-dir) src_opts+=("--src-cert-dir=${2:?}"); shift 2 ;;
    --src-tls-verify) src_opts+=("--src-tls-verify=${2:?}"); shift 2 ;;
    --dest-creds) dest_opts+=("--dest-creds=${2:?}"); shift 2 ;;
    --dest-cert-dir) dest_opts+=("--dest-cert-dir=${2:?}"); shift 2 ;;
    --dest-tls-verify) dest_opts+=("--dest-tls-verify=${2:?}"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) kata_die "unknown argument $1 (see --help)" ;;
  esac
done
kata_need_cmd umoci:umoci skopeo:skopeo
[ -n "$from" ] || kata_die "--from SRC is required"
[ -n "$push" ] || kata_die "--push DEST is required"
((${#replaces[@]})) || [ -n "$agent" ] || kata_die "nothing to change: give --replace FILE:PATH or --agent FILE"
for r in ${replaces[@]+"${replaces[@]}"}; do
  [[ $r == *:* ]] || kata_die "--replace $r: expected FILE:PATH"
  [ -f "${r%%:*}" ] || kata_die "--replace $r: ${r%%:*}: no such file"
  p=${r#*:}
  [[ $p != /* && $p != *..* && -n $p ]] || kata_die "--replace $r: PATH must be relative to the payload, without .."
done
[ -z "$agent" ] || [ -x "$agent" ] || kata_die "--agent $agent: not an executable"

work=$(mktemp -d "${TMPDIR:-/tmp}/custom-payload.XXXXXX") || kata_die "cannot create a temp dir"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

skopeo copy --quiet ${src_opts[@]+"${src_opts[@]}"} "$(transport "$from")" "oci:$work/oci:payload" ||
  kata_die "pulling $from failed (skopeo copy, see above)"
umoci unpack --image "$work/oci:payload" "$work/bundle" >/dev/null || kata_die "unpacking $from failed"
payload=$work/bundle/rootfs/opt/kata-artifacts
[ -d "$payload" ] || kata_die "$from has no /opt/kata-artifacts: not a kata-deploy payload image"

changes=()
for r in ${replaces[@]+"${replaces[@]}"}; do
  src=${r%%:*} dst=$payload/${r#*:}
  mkdir -p "$(dirname "$dst")"
  rm -f "$dst"
  cp "$src" "$dst"
  chmod "$(stat -c %a "$src")" "$dst"
  changes+=("${r#*:}")
  kata_info "replaced ${r#*:} with $src"
done
if [ -n "$agent" ]; then
  found=0
  for asset in "$payload"/share/kata-containers/*.img; do
    { [ -f "$asset" ] && [ ! -L "$asset" ]; } || continue
    "$KATA_REPO_ROOT/tools/osbuilder/osbuilder.sh" replace-agent --agent "$agent" --target "$asset" >/dev/null ||
      kata_die "replacing the agent in ${asset#"$payload"/} failed (see above)"
    found=1
    changes+=("agent in ${asset#"$payload"/}")
  done
  ((found)) || kata_die "--agent: the payload has no guest initrd or image under share/kata-containers/"
fi

umoci repack --image "$work/oci:payload" "$work/bundle" >/dev/null || kata_die "repacking failed"
umoci config --image "$work/oci:payload" --config.label "io.katacontainers.payload.custom=true" \
  --config.label "io.katacontainers.payload.custom.base=$from" >/dev/null
skopeo copy --quiet ${dest_opts[@]+"${dest_opts[@]}"} "oci:$work/oci:payload" "$(transport "$push")" ||
  kata_die "pushing to $push failed (skopeo copy, see above)"
kata_info "pushed $push: $from with $(IFS=,; echo "${changes[*]}")"
