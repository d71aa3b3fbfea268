#!/usr/bin/env bash
# replace-shim.sh: give one runtime class its own shim binary, the way `osbuilder.sh
# replace-agent` swaps the agent: for hacking on the shim of one class (seed: qemu-sev) while
# every other class keeps the installed one.
#
#   replace-shim.sh --runtime-class CLASS --shim FILE [--prefix DIR]
#   replace-shim.sh --runtime-class CLASS --restore [--prefix DIR]
#
#   CLASS    qemu-sev (or kata-qemu-sev): the class whose shim is PREFIX/bin/
#            containerd-shim-kata-CLASS-v2, normally an alias (symlink) of
#            containerd-shim-kata-v2. The default class kata cannot be replaced alone: its
#            binary is the one every alias points to.
#   --shim FILE  the new shim binary; it becomes that class's shim (a copy, put in place with
#            rename(2): running pods keep the old one, new pods of the class start the new one)
#   --restore    puts back what was there before the first replacement
#   --prefix DIR the installation (default $INSTALLATION_PREFIX, else /opt/kata)
#
# The original is kept in PREFIX/.replace-shim/ until --restore (kata-deploy cleanup removes
# that directory too).
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
KATA_PROG=replace-shim
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

class="" shim="" restore=0 prefix=${INSTALLATION_PREFIX:-/opt/kata}
while (($#)); do
  case $1 in
    --runtime-class) class=${2:?--runtime-class CLASS}; shift 2 ;;
    --shim) shim=${2:?--shim FILE}; shift 2 ;;
    --restore) restore=1; shift ;;
    --prefix) prefix=${2:?--prefix DIR}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) kata_die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$class" ] || kata_die "--runtime-class CLASS is required"
class=${class#kata-}
[ "$class" != kata ] ||
  kata_die "runtime class kata: its shim containerd-shim-kata-v2 is the binary every class's alias points to; replacing it would change them all (replace one class, e.g. --runtime-class qemu-sev)"
[[ $class =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] || kata_die "runtime class $class: expected lower-case letters, digits and '-'"
{ [ -n "$shim" ] && [ "$restore" = 0 ]; } || { [ -z "$shim" ] && [ "$restore" = 1 ]; } ||
  kata_die "give --shim FILE or --restore (one of them)"
[ -d "$prefix/bin" ] || kata_die "prefix $prefix: no bin directory (is kata-cpp installed there?)"

name=containerd-shim-kata-$class-v2
target=$prefix/bin/$name
backup_dir=$prefix/.replace-shim
backup=$backup_dir/$name

if [ "$restore" = 1 ]; then
  [ -e "$backup" ] || [ -L "$backup" ] ||
    kata_die "runtime class $class: nothing to restore (no $backup; the shim was not replaced)"
  mv -fT "$backup" "$target" || kata_die "cannot move $backup back to $target"
  rmdir "$backup_dir" 2>/dev/null || true
  kata_info "runtime class $class: $target restored$( [ -L "$target" ] && echo " (-> $(readlink "$target"))")"
  exit 0
fi

[ -e "$target" ] || [ -L "$target" ] ||
  kata_die "runtime class $class: $target does not exist (classes here: $(find "$prefix/bin" -maxdepth 1 -name 'containerd-shim-kata-*-v2' -printf '%f\n' | sed 's/^containerd-shim-kata-//; s/-v2$//' | LC_ALL=C sort | tr '\n' ' '))"
[ -f "$shim" ] || kata_die "--shim $shim: no such file"
[ -x "$shim" ] || kata_die "--shim $shim: not executable"
[ "$(readlink -f "$shim")" != "$(readlink -f "$target")" ] ||
  kata_die "--shim $shim is the installed binary itself (that would replace nothing)"

mkdir -p "$backup_dir"
# The first replacement keeps the original; later ones only swap the replacement.
if [ ! -e "$backup" ] && [ ! -L "$backup" ]; then
  cp -P "$target" "$backup" || kata_die "cannot keep the original $target in $backup_dir"
fi
tmp=$(mktemp "$prefix/bin/.$name.XXXXXX") || kata_die "cannot write to $prefix/bin"
if ! { cp "$shim" "$tmp" && chmod 0755 "$tmp" && mv -fT "$tmp" "$target"; }; then
  rm -f "$tmp"
  kata_die "cannot put $shim in place as $target"
fi
kata_info "runtime class $class: $target is now $shim (other classes unchanged; undo with --restore)"
