#!/usr/bin/env bash
# The initrd holds what the agent and docs/CONTRACTS.md expect: /init is the agent, the
# kernel's modules with /etc/kata-agent/modules.load in dependency order, the skeleton and
# console device, busybox only with --debug-console, the --extra files, and a dynamic
# agent's libraries.
source "$(dirname "$0")/lib.sh"
K=$(debian_kernel)
release=$(cat "$K/release")

cp /bin/busybox "$T/agent"
mkdir -p "$T/extra-dir/sub"
echo policy >"$T/policy.json"
echo nested >"$T/extra-dir/sub/file"
"$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/initrd.img" \
  --extra "$T/policy.json:/etc/containers/policy.json" --extra "$T/extra-dir:/opt/extra" >/dev/null
mkdir "$T/x"
(cd "$T/x" && cpio -idm --quiet <"$T/initrd.img")
x="$T/x"

cmp "$x/init" "$T/agent" || fail "/init is not the agent"
[ -x "$x/init" ] || fail "/init is not executable"
[ "$(readlink "$x/usr/bin/kata-agent")" = ../../init ] || fail "/usr/bin/kata-agent does not point to /init"
for d in proc sys dev run tmp etc; do [ -d "$x/$d" ] || fail "/$d missing"; done
[ "$(stat -c %a "$x/tmp")" = 1777 ] || fail "/tmp is not 1777"
{ [ -c "$x/dev/console" ] && [ "$(stat -c '%t,%T' "$x/dev/console")" = "5,1" ]; } || fail "/dev/console is not char 5,1"
[ ! -e "$x/bin/busybox" ] || fail "busybox present without --debug-console"
[ "$(cat "$x/etc/containers/policy.json")" = policy ] || fail "--extra file missing"
[ "$(cat "$x/opt/extra/sub/file")" = nested ] || fail "--extra directory missing"
[ -z "$(find "$x" ! -user 0)" ] || fail "files not owned by root"

# modules.load: absolute paths of existing .ko files, all of the kernel dir's modules, and
# each one after everything modules.dep says it needs.
load="$x/etc/kata-agent/modules.load"
[ -s "$load" ] || fail "modules.load is empty"
[ "$(wc -l <"$load")" -eq "$(find "$K/modules" -name '*.ko' | wc -l)" ] || fail "modules.load does not list every module"
n=0
declare -A pos
while read -r ko; do
  [[ $ko == /lib/modules/$release/* ]] || fail "modules.load entry $ko is not under /lib/modules/$release"
  [ -f "$x$ko" ] || fail "modules.load names $ko, which is not in the initrd"
  pos[${ko#/lib/modules/"$release"/}]=$((n++))
done <"$load"
while read -r mod deps; do
  mod=${mod%:}
  for d in $deps; do
    ((pos[$d] < pos[$mod])) || fail "modules.load has $mod before its dependency $d"
  done
done <"$x/lib/modules/$release/modules.dep"
{ grep -q "/virtio_ring.ko$" "$load" && grep -q "/virtio_console.ko$" "$load"; } || fail "virtio modules missing from modules.load"
pass "tree, modules.load order ($n modules) and extras as expected"

"$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/debug.img" --debug-console >/dev/null
[ "$(cpio_cat "$T/debug.img" bin/busybox | sha256sum)" = "$(sha256sum </bin/busybox)" ] || fail "--debug-console: no busybox"
grep -qx bin/sh <<<"$(cpio -t --quiet <"$T/debug.img")" || fail "--debug-console: no /bin/sh applet link"
pass "--debug-console adds busybox and its applets"

"$OSBUILDER" initrd --agent /bin/true --kernel-dir "$K" --out "$T/dyn.img" >/dev/null 2>"$T/dyn.err"
grep -q "dynamically linked" "$T/dyn.err" || fail "no warning for a dynamic agent"
list=$(cpio -t --quiet <"$T/dyn.img")
for lib in $(ldd /bin/true | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }'); do
  grep -qx "${lib#/}" <<<"$list" || fail "dynamic agent: $lib not in the initrd"
done
pass "a dynamic agent brings its libraries"

printf 'int main(void) { return 0; }\n' | gcc -g -static -x c - -o "$T/debug-agent" ||
  fail "cannot compile a test agent with debug info"
"$OSBUILDER" initrd --agent "$T/debug-agent" --kernel-dir "$K" --out "$T/strip.img" >/dev/null
cpio_cat "$T/strip.img" init >"$T/init-in-initrd"
[ "$(stat -c %s "$T/init-in-initrd")" -lt "$(stat -c %s "$T/debug-agent")" ] || fail "the agent was not stripped"
readelf -S "$T/init-in-initrd" | grep -q "debug_info" && fail "/init still has debug info"
KATA_STRIP_AGENT=0 "$OSBUILDER" initrd --agent "$T/debug-agent" --kernel-dir "$K" --out "$T/nostrip.img" >/dev/null
cpio_cat "$T/nostrip.img" init | cmp -s - "$T/debug-agent" || fail "KATA_STRIP_AGENT=0 did not keep the agent as it is"
pass "the agent is stripped in the guest (KATA_STRIP_AGENT=0 keeps debug info)"
