#!/usr/bin/env bash
# osbuilder.sh: build the guest initrd or rootfs image that carries kata-agent.
#
#   osbuilder.sh initrd --agent PATH --kernel-dir DIR --out FILE
#                       [--debug-console] [--extra SRC:DST]... [--compression none|gzip|zstd|xz]
#   osbuilder.sh image  --agent PATH --kernel-dir DIR --out FILE [--fs ext4|erofs]
#                       [--debug-console] [--extra SRC:DST]...
#   osbuilder.sh replace-agent --agent PATH (--target FILE | --all)
#   osbuilder.sh floor-initrd --kernel-dir DIR --out FILE [--compression ...]
#   osbuilder.sh build-guest-assets --agent PATH --out-dir DIR [...]   (build-guest-assets.sh)
#
# The guest tree: /init is the agent (its shared libraries too when it is dynamic),
# /lib/modules/<release>/ the kernel dir's modules, /etc/kata-agent/modules.load their
# absolute paths in load order, /proc /sys /dev /run /tmp /etc, /dev/console and /dev/null,
# busybox with its applet links under --debug-console, then the --extra files.
#
# Outputs are reproducible: entries sorted, owners root, times SOURCE_DATE_EPOCH (default 1),
# modes normalised. An output is written next to FILE and renamed into place, so a failed
# run leaves nothing behind.
#
# replace-agent --all swaps the agent into the initrd = / image = asset of every
# configuration*.toml under $KATA_CONFIG_SEARCH_DIRS (default:
# /opt/kata/share/defaults/kata-containers /etc/kata-containers).
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=osbuilder
# shellcheck source=../packaging/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../packaging/scripts/lib.sh"

# e2fsprogs takes a fake time of 0 for "no fake time", hence 1 rather than 0.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1}
[[ $SOURCE_DATE_EPOCH =~ ^[1-9][0-9]*$ ]] || kata_die "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH: expected a positive number of seconds"
BUSYBOX=${KATA_BUSYBOX:-/bin/busybox}
DEFAULT_COMPRESSION=$(kata_version assets.initrd.compression)
umask 022

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------------------
# temp dirs, cleaned up on every exit path

TMPDIRS=()
cleanup() { local d; for d in "${TMPDIRS[@]}"; do [ -n "$d" ] && rm -rf "$d"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
new_tmpdir() { # VAR [PARENT]
  local d
  d=$(mktemp -d "${2:-${TMPDIR:-/tmp}}/.osbuilder.XXXXXX") || kata_die "cannot create a temp dir in ${2:-${TMPDIR:-/tmp}}"
  TMPDIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

# ---------------------------------------------------------------------------------------
# input checks

check_agent() {
  local a=$1
  [ -n "$a" ] || kata_die "--agent PATH is required"
  [ -e "$a" ] || kata_die "agent $a: no such file"
  [ -f "$a" ] || kata_die "agent $a: not a regular file"
  [ -x "$a" ] || kata_die "agent $a: not executable"
}

check_kernel_dir() {
  local k=$1 release
  [ -n "$k" ] || kata_die "--kernel-dir DIR is required"
  [ -d "$k" ] || kata_die "kernel dir $k: no such directory (make one with tools/packaging/kernel/fetch-debian-kernel.sh)"
  [ -r "$k/release" ] || kata_die "kernel dir $k: no release file"
  release=$(cat "$k/release")
  [ -n "$release" ] || kata_die "kernel dir $k: release file is empty"
  if [ -d "$k/modules/lib/modules/$release" ] && [ -n "$(find "$k/modules/lib/modules/$release" -name '*.ko' -print -quit)" ]; then
    [ -r "$k/modules/lib/modules/$release/modules.dep" ] ||
      kata_die "kernel dir $k: modules without modules.dep (run depmod -b $k/modules $release)"
  fi
}

check_out() {
  local o=$1
  [ -n "$o" ] || kata_die "--out FILE is required"
  [ -d "$(dirname "$o")" ] || kata_die "output directory $(dirname "$o"): no such directory"
  [ ! -d "$o" ] || kata_die "output $o is a directory"
}

check_extra() {
  local e=$1 src dst
  [[ $e == *:* ]] || kata_die "--extra $e: expected SRC:DST"
  src=${e%%:*} dst=${e#*:}
  [ -e "$src" ] || kata_die "--extra $e: $src: no such file or directory"
  [[ $dst == /* ]] || kata_die "--extra $e: destination $dst must be an absolute path in the guest"
  [[ $dst != *..* ]] || kata_die "--extra $e: destination $dst must not contain .."
}

is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }
is_dynamic_elf() {
  local headers
  is_elf "$1" || return 1
  headers=$(readelf -lW "$1" 2>/dev/null) || return 1
  grep -q 'Requesting program interpreter' <<<"$headers"
}

# ---------------------------------------------------------------------------------------
# the guest tree

# strip_binary FILE: drops debug info and symbols from an ELF going into the guest (a
# RelWithDebInfo agent is ~40 MB, stripped ~5 MB: the difference costs boot time and guest
# memory). KATA_STRIP_AGENT=0 keeps them, for debugging in the guest.
strip_binary() {
  [ "${KATA_STRIP_AGENT:-1}" = 1 ] || return 0
  is_elf "$1" || return 0
  kata_need_cmd strip:binutils
  strip --strip-all "$1" || kata_die "strip $1 failed"
}

# install_binary SRC DST_IN_TREE TREE: copy a binary (stripped); a dynamic one brings its
# libraries and loader along, at the paths ldd reports.
install_binary() {
  local src=$1 dst=$2 tree=$3 lib
  mkdir -p "$tree$(dirname "$dst")"
  cp -L "$src" "$tree$dst"
  chmod 0755 "$tree$dst"
  strip_binary "$tree$dst"
  if is_dynamic_elf "$src"; then
    kata_warn "$src is dynamically linked; copying its libraries into the guest (a static agent is smaller and faster)"
    while read -r lib; do
      [ -n "$lib" ] || continue
      [ -e "$tree$lib" ] && continue
      mkdir -p "$tree$(dirname "$lib")"
      cp -L "$lib" "$tree$lib"
    done < <(ldd "$src" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | LC_ALL=C sort -u)
  elif ! is_elf "$src"; then
    local interp
    interp=$(head -n1 "$src" | sed -n 's/^#![[:space:]]*\([^[:space:]]*\).*/\1/p')
    [ -n "$interp" ] && [ ! -e "$tree$interp" ] && [ ! -L "$tree$interp" ] &&
      kata_warn "$src is a script for $interp, which the guest tree does not have (use --debug-console for busybox)"
  fi
  return 0
}

# install_modules KERNEL_DIR TREE: the modules and /etc/kata-agent/modules.load
install_modules() {
  local kdir=$1 tree=$2 release moddir
  release=$(cat "$kdir/release")
  moddir="$kdir/modules/lib/modules/$release"
  mkdir -p "$tree/etc/kata-agent" "$tree/lib/modules"
  : >"$tree/etc/kata-agent/modules.load"
  if [ -d "$moddir" ]; then
    cp -a "$moddir" "$tree/lib/modules/$release"
    if [ -f "$moddir/modules.dep" ]; then
      kata_module_order "$moddir" | sed "s|^|/lib/modules/$release/|" >"$tree/etc/kata-agent/modules.load" ||
        kata_die "cannot put the modules of $moddir/modules.dep in load order (see above)"
    fi
  fi
}

make_skeleton() {
  local tree=$1
  mkdir -p "$tree"/{proc,sys,dev,run,tmp,etc,root,sbin,usr/bin,var,mnt,lib/modules}
  chmod 1777 "$tree/tmp"
  ln -sfn ../run "$tree/var/run"
  # The kernel opens /dev/console for init before anything mounts devtmpfs.
  if [ "$(id -u)" = 0 ]; then
    mknod -m 0600 "$tree/dev/console" c 5 1
    mknod -m 0666 "$tree/dev/null" c 1 3
  else
    kata_warn "not root: /dev/console and /dev/null left out of the guest tree (init starts without a console)"
  fi
}

install_busybox() {
  local tree=$1 applet
  [ -x "$BUSYBOX" ] || kata_die "busybox $BUSYBOX: not found (apt-get install busybox-static)"
  is_dynamic_elf "$BUSYBOX" && kata_die "busybox $BUSYBOX is dynamically linked; install busybox-static"
  mkdir -p "$tree/bin" "$tree/usr/sbin"
  cp -L "$BUSYBOX" "$tree/bin/busybox"
  chmod 0755 "$tree/bin/busybox"
  # One link per applet at its usual path. busybox --install in a chroot makes them all in
  # one process (a fork per applet takes seconds on a loaded machine); the loop is for non-root.
  "$BUSYBOX" --list-full | awk -v t="$tree" '/\// { d = $0; sub(/\/[^\/]*$/, "", d); print t "/" d }' |
    LC_ALL=C sort -u | xargs -r mkdir -p
  if [ "$(id -u)" = 0 ] && chroot "$tree" /bin/busybox --install -s >/dev/null 2>&1; then
    rm -f "$tree/linuxrc" # busybox adds it for old-style initrds; nothing uses it
  else
    (cd "$tree" && "$BUSYBOX" --list-full | while read -r applet; do
      [ -e "$applet" ] || [ -L "$applet" ] || printf '%s\n' "$applet"
    done | xargs -r -n1 ln -s /bin/busybox) || kata_die "cannot create the busybox applet links in $tree"
  fi
  [ -f "$tree/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
  [ -f "$tree/etc/group" ] || printf 'root:x:0:\n' >"$tree/etc/group"
}

install_extras() {
  local tree=$1 e src dst
  shift
  for e in "$@"; do
    src=${e%%:*} dst=${e#*:}
    mkdir -p "$tree$(dirname "$dst")"
    if [ -d "$src" ]; then
      mkdir -p "$tree$dst"
      cp -a "$src/." "$tree$dst/"
    else
      cp -L --preserve=mode "$src" "$tree$dst"
    fi
  done
}

# normalize TREE: fixed owners, modes and times, so the same inputs give the same bytes
# whatever the umask, the source files' times or the user.
normalize_tree() {
  local tree=$1
  if [ "$(id -u)" = 0 ]; then chown -hR 0:0 "$tree"; fi
  find "$tree" -type d ! -path "$tree/tmp" -exec chmod 0755 {} +
  find "$tree" -type f -perm /111 -exec chmod 0755 {} +
  find "$tree" -type f ! -perm /111 -exec chmod 0644 {} +
  find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# build_tree TREE AGENT KERNEL_DIR DEBUG_CONSOLE EXTRA...
build_tree() {
  local tree=$1 agent=$2 kdir=$3 debug=$4
  shift 4
  make_skeleton "$tree"
  [ "$debug" = 1 ] && install_busybox "$tree"
  install_binary "$agent" /init "$tree"
  ln -sfn ../../init "$tree/usr/bin/kata-agent"
  ln -sfn ../init "$tree/sbin/init"
  install_modules "$kdir" "$tree"
  install_extras "$tree" "$@"
  normalize_tree "$tree"
}

# ---------------------------------------------------------------------------------------
# packing

compress_cmd() {
  case $1 in
    none) echo cat ;;
    gzip) echo "gzip -n -6" ;;
    zstd) echo "zstd -q -9 -T1" ;;
    xz) echo "xz --check=crc32 -T1 -3" ;; # the kernel's xz decoder wants CRC32
    *) kata_die "unknown compression $1 (none, gzip, zstd, xz)" ;;
  esac
}

# detect_format FILE: cpio-none|cpio-gzip|cpio-zstd|cpio-xz|ext4|erofs|unknown
detect_format() {
  local f=$1 magic
  magic=$(head -c 6 "$f" | od -An -tx1 | tr -d ' \n')
  case $magic in
    303730373031*) echo cpio-none; return ;;
    1f8b*) echo cpio-gzip; return ;;
    28b52ffd*) echo cpio-zstd; return ;;
    fd377a585a00) echo cpio-xz; return ;;
  esac
  if [ "$(od -An -tx1 -j 1080 -N 2 "$f" 2>/dev/null | tr -d ' \n')" = 53ef ]; then echo ext4; return; fi
  if [ "$(od -An -tx1 -j 1024 -N 4 "$f" 2>/dev/null | tr -d ' \n')" = e2e1f5e0 ]; then echo erofs; return; fi
  echo unknown
}

decompress_cmd() {
  case $1 in
    cpio-none) echo cat ;;
    cpio-gzip) echo "gzip -dc" ;;
    cpio-zstd) echo "zstd -dcq" ;;
    cpio-xz) echo "xz -dc" ;;
  esac
}

# pack_cpio TREE OUT COMPRESSION: newc archive of TREE, written to OUT atomically.
pack_cpio() {
  local tree=$1 out=$2 comp=$3 cmd tmp
  cmd=$(compress_cmd "$comp")
  tmp=$(mktemp "$(dirname "$out")/.$(basename "$out").XXXXXX") || kata_die "cannot create a temp file next to $out"
  if ! (cd "$tree" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio -o -H newc --reproducible -R 0:0 --quiet | $cmd >"$tmp"); then
    rm -f "$tmp"
    kata_die "writing the cpio archive $out failed"
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$out"
}

# uuid_from HEX: a version-4-shaped UUID made from a hash, so images are reproducible.
uuid_from() { local h=$1; echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"; }

# fix_ext4_times IMAGE TREE: mkfs.ext4 -d copies each file's atime and ctime from the
# staging tree, and those are "now" (ctime cannot be set; reading a file moves its atime),
# so set every inode's times to SOURCE_DATE_EPOCH afterwards.
fix_ext4_times() {
  local img=$1 tree=$2 cmds log p
  cmds=$(mktemp "$(dirname "$img")/.debugfs.XXXXXX") || kata_die "cannot create a temp file next to $img"
  { echo /; echo /lost+found; (cd "$tree" && find . -mindepth 1 -printf '/%P\n'); } | while read -r p; do
    for t in atime ctime mtime crtime; do printf 'sif "%s" %s @%s\n' "$p" "$t" "$SOURCE_DATE_EPOCH"; done
  done >"$cmds"
  log=$(E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$cmds" "$img" 2>&1 >/dev/null)
  rm -f "$cmds"
  if grep -Eqi 'error|not found|invalid|cannot|could not' <<<"$log"; then
    kata_die "setting the file times in $img failed: $(grep -Ei 'error|not found|invalid|cannot|could not' <<<"$log" | head -n3 | tr '\n' ' ')"
  fi
}

pack_image() {
  local tree=$1 out=$2 fs=$3 tmp bytes mb uuid
  uuid=$(uuid_from "$(cd "$tree" && find . -printf '%P\n' | LC_ALL=C sort | sha256sum | cut -c1-32)$(sha256sum <"$tree/init" | cut -c1-32)")
  tmp=$(mktemp "$(dirname "$out")/.$(basename "$out").XXXXXX") || kata_die "cannot create a temp file next to $out"
  case $fs in
    ext4)
      kata_need_cmd mkfs.ext4:e2fsprogs
      bytes=$(du -sb --apparent-size "$tree" | cut -f1)
      # contents + 25% + 16 MiB for metadata, rounded to whole MiB
      mb=$(((bytes * 5 / 4) / 1048576 + 16))
      rm -f "$tmp"
      if ! E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -t ext4 -L kata-rootfs -U "$uuid" \
        -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0,nodiscard" -O ^has_journal \
        -b 4096 -m 0 -d "$tree" "$tmp" "${mb}M" >/dev/null; then
        rm -f "$tmp"
        kata_die "mkfs.ext4 of $out (${mb} MiB from $tree) failed"
      fi
      fix_ext4_times "$tmp" "$tree" || { rm -f "$tmp"; exit 1; }
      ;;
    erofs)
      kata_need_cmd mkfs.erofs:erofs-utils
      rm -f "$tmp"
      if ! mkfs.erofs --quiet -T "$SOURCE_DATE_EPOCH" -U "$uuid" --all-root "$tmp" "$tree" >/dev/null; then
        rm -f "$tmp"
        kata_die "mkfs.erofs of $out from $tree failed"
      fi
      ;;
    *) rm -f "$tmp"; kata_die "unknown filesystem $fs (ext4, erofs)" ;;
  esac
  chmod 0644 "$tmp"
  mv -f "$tmp" "$out"
}

# ---------------------------------------------------------------------------------------
# subcommands

cmd_build() { # initrd|image ARGS...
  local kind=$1 agent="" kdir="" out="" debug=0 comp=$DEFAULT_COMPRESSION fs ext
  fs=$(kata_version assets.image.fs)
  local -a extras=()
  shift
  while (($#)); do
    case $1 in
      --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
      --kernel-dir) kdir=${2:?--kernel-dir needs a DIR}; shift 2 ;;
      --out) out=${2:?--out needs a FILE}; shift 2 ;;
      --debug-console) debug=1; shift ;;
      --extra) extras+=("${2:?--extra needs SRC:DST}"); shift 2 ;;
      --compression) [ "$kind" = initrd ] || kata_die "--compression is for initrds"; comp=${2:?}; shift 2 ;;
      --fs) [ "$kind" = image ] || kata_die "--fs is for images"; fs=${2:?}; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) kata_die "$kind: unknown argument $1 (see --help)" ;;
    esac
  done
  check_agent "$agent"
  check_kernel_dir "$kdir"
  check_out "$out"
  for ext in "${extras[@]}"; do check_extra "$ext"; done
  kata_need_cmd cpio:cpio find:findutils
  [ "$kind" = initrd ] && compress_cmd "$comp" >/dev/null

  local work
  new_tmpdir work "$(dirname "$out")"
  build_tree "$work/root" "$agent" "$kdir" "$debug" "${extras[@]}"
  if [ "$kind" = initrd ]; then
    pack_cpio "$work/root" "$out" "$comp"
  else
    pack_image "$work/root" "$out" "$fs"
  fi
  kata_info "$kind $out ready ($(du -h "$out" | cut -f1), agent $agent, kernel $(cat "$kdir/release"))"
  echo "$out"
}

cmd_floor() {
  local kdir="" out="" comp=$DEFAULT_COMPRESSION
  while (($#)); do
    case $1 in
      --kernel-dir) kdir=${2:?--kernel-dir needs a DIR}; shift 2 ;;
      --out) out=${2:?--out needs a FILE}; shift 2 ;;
      --compression) comp=${2:?}; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) kata_die "floor-initrd: unknown argument $1" ;;
    esac
  done
  check_kernel_dir "$kdir"
  check_out "$out"
  compress_cmd "$comp" >/dev/null
  local work
  new_tmpdir work "$(dirname "$out")"
  # The floor: same modules and skeleton, an init that powers the VM off at once.
  printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' >"$work/floor-init"
  chmod 0755 "$work/floor-init"
  mkdir -p "$work/root/bin"
  cp -L "$BUSYBOX" "$work/root/bin/busybox" || kata_die "busybox $BUSYBOX: cannot copy"
  build_tree "$work/root" "$work/floor-init" "$kdir" 0
  pack_cpio "$work/root" "$out" "$comp"
  kata_info "floor initrd $out ready ($(du -h "$out" | cut -f1))"
  echo "$out"
}

# replace_in_initrd AGENT TARGET FORMAT
replace_in_initrd() {
  local agent=$1 target=$2 format=$3 work comp unpack
  comp=${format#cpio-}
  unpack=$(decompress_cmd "$format")
  new_tmpdir work "$(dirname "$target")"
  mkdir "$work/root"
  if ! (cd "$work/root" && $unpack <"$target" | cpio -idm --quiet --no-absolute-filenames); then
    kata_die "cannot unpack $target ($format)"
  fi
  [ -e "$work/root/init" ] || [ -L "$work/root/init" ] || kata_die "$target has no /init to replace"
  rm -f "$work/root/init"
  install_binary "$agent" /init "$work/root"
  normalize_tree "$work/root"
  pack_cpio "$work/root" "$target" "$comp"
}

replace_in_ext4() {
  local agent=$1 target=$2 work
  kata_need_cmd debugfs:e2fsprogs
  new_tmpdir work "$(dirname "$target")"
  cp --sparse=always "$target" "$work/img"
  is_dynamic_elf "$agent" && kata_die "$agent is dynamically linked; replace-agent into an image needs a static agent (rebuild the image with osbuilder.sh image)"
  cp -L "$agent" "$work/agent"
  strip_binary "$work/agent"
  local cmds="$work/cmds"
  {
    echo "rm /init"
    echo "write $work/agent /init"
    echo "sif /init mode 0100755"
    echo "sif /init uid 0"
    echo "sif /init gid 0"
    for t in atime mtime ctime crtime; do echo "sif /init $t @$SOURCE_DATE_EPOCH"; done
  } >"$cmds"
  local log
  log=$(E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$cmds" "$work/img" 2>&1) ||
    kata_die "debugfs on a copy of $target failed: $log"
  if grep -Eqi 'error|not found|could not|cannot' <<<"$log"; then
    kata_die "replacing /init in a copy of $target failed: $(grep -Ei 'error|not found|could not|cannot' <<<"$log" | head -n3 | tr '\n' ' ')"
  fi
  mv -f "$work/img" "$target"
}

replace_one() { # AGENT TARGET
  local agent=$1 target=$2 real format start
  start=$(date +%s.%N)
  [ -e "$target" ] || kata_die "replace-agent: target $target: no such file"
  real=$(readlink -f "$target")
  [ -f "$real" ] || kata_die "replace-agent: target $target: not a regular file"
  [ -w "$(dirname "$real")" ] || kata_die "replace-agent: cannot write to $(dirname "$real") (root needed?)"
  format=$(detect_format "$real")
  case $format in
    cpio-*) replace_in_initrd "$agent" "$real" "$format" ;;
    ext4) replace_in_ext4 "$agent" "$real" ;;
    erofs) kata_die "replace-agent: $real is a read-only erofs image; rebuild it with osbuilder.sh image --fs erofs" ;;
    *) kata_die "replace-agent: $real is neither a cpio initrd (none/gzip/zstd/xz) nor an ext4 image" ;;
  esac
  kata_info "agent in $real replaced ($format, $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f s", e - s }'))"
  echo "$real"
}

# guest_assets_of_configs: "config<TAB>asset" for every initrd/image key in the config files.
guest_assets_of_configs() {
  local dirs=${KATA_CONFIG_SEARCH_DIRS:-/opt/kata/share/defaults/kata-containers /etc/kata-containers}
  local d f
  for d in $dirs; do
    [ -d "$d" ] || continue
    for f in "$d"/configuration*.toml; do
      [ -f "$f" ] || continue
      awk -v file="$f" '
        /^[[:space:]]*(initrd|image)[[:space:]]*=/ {
          v = $0; sub(/^[^=]*=[[:space:]]*/, "", v)
          if (v ~ /^"/) { v = substr(v, 2); sub(/".*$/, "", v) }
          else if (v ~ /^'\''/) { v = substr(v, 2); sub(/'\''.*$/, "", v) }
          else { sub(/[[:space:]]*#.*$/, "", v) }
          if (v != "") print file "\t" v
        }' "$f"
    done
  done
}

cmd_replace_agent() {
  local agent="" target="" all=0
  while (($#)); do
    case $1 in
      --agent) agent=${2:?--agent needs a PATH}; shift 2 ;;
      --target) target=${2:?--target needs a FILE}; shift 2 ;;
      --all) all=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) kata_die "replace-agent: unknown argument $1" ;;
    esac
  done
  check_agent "$agent"
  agent=$(readlink -f "$agent")
  kata_need_cmd cpio:cpio
  if [ -n "$target" ] && [ "$all" = 1 ]; then kata_die "replace-agent: give --target FILE or --all, not both"; fi
  if [ -n "$target" ]; then
    replace_one "$agent" "$target"
    return
  fi
  [ "$all" = 1 ] || kata_die "replace-agent: give --target FILE or --all"
  local -a pairs
  mapfile -t pairs < <(guest_assets_of_configs)
  ((${#pairs[@]})) || kata_die "replace-agent --all: no initrd = or image = key in any configuration*.toml under ${KATA_CONFIG_SEARCH_DIRS:-/opt/kata/share/defaults/kata-containers /etc/kata-containers}"
  local -A done_assets=()
  local p cfg asset real failed=0
  for p in "${pairs[@]}"; do
    cfg=${p%%$'\t'*} asset=${p#*$'\t'}
    if [ ! -e "$asset" ]; then
      kata_warn "$cfg names $asset, which does not exist; skipped"
      failed=1
      continue
    fi
    real=$(readlink -f "$asset")
    if [ -n "${done_assets[$real]:-}" ]; then
      kata_info "$cfg: $asset already done (shared with ${done_assets[$real]})"
      continue
    fi
    kata_info "$cfg: replacing the agent in $asset"
    # A child process, so set -e still applies inside (it would not under ||).
    "$0" replace-agent --agent "$agent" --target "$asset" >/dev/null || failed=1
    done_assets[$real]=$cfg
  done
  ((failed == 0)) || kata_die "replace-agent --all: some guest assets were not updated (see above)"
}

case ${1:-} in
  initrd | image) cmd_build "$@" ;;
  floor-initrd) shift; cmd_floor "$@" ;;
  replace-agent) shift; cmd_replace_agent "$@" ;;
  build-guest-assets) shift; exec "$(dirname "${BASH_SOURCE[0]}")/build-guest-assets.sh" "$@" ;;
  -h | --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) kata_die "unknown subcommand $1 (initrd, image, replace-agent, floor-initrd, build-guest-assets; see --help)" ;;
esac
