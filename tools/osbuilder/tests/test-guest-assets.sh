#!/usr/bin/env bash
# build-guest-assets.sh prints kernel=/initrd=/kernel_dir=/release= lines for the files it
# made, does nothing the second time, and rebuilds when the agent changes.
source "$(dirname "$0")/lib.sh"
GA="$REPO/tools/osbuilder/build-guest-assets.sh"
cp /bin/busybox "$T/agent"

out=$("$GA" --agent "$T/agent" --out-dir "$T/assets" 2>/dev/null)
kernel=$(sed -n 's/^kernel=//p' <<<"$out")
initrd=$(sed -n 's/^initrd=//p' <<<"$out")
kdir=$(sed -n 's/^kernel_dir=//p' <<<"$out")
release=$(sed -n 's/^release=//p' <<<"$out")
{ [ "$kernel" = "$T/assets/vmlinux.container" ] && [ "$initrd" = "$T/assets/kata-containers-initrd.img" ]; } ||
  fail "unexpected output: $out"
cmp "$kernel" "$kdir/vmlinux" || fail "vmlinux.container is not the kernel dir's vmlinux"
[ "$release" = "$(cat "$kdir/release")" ] || fail "release $release does not match $kdir"
cpio_cat "$initrd" init | cmp - "$T/agent" || fail "initrd /init is not the agent"

start=$(now)
"$GA" --agent "$T/agent" --out-dir "$T/assets" >/dev/null 2>"$T/err"
took=$(elapsed "$start")
grep -q "up to date" "$T/err" || { cat "$T/err" >&2; fail "second run rebuilt with nothing changed"; }
pass "second run: up to date in ${took}s"

agent_variant /bin/busybox "$T/agent" "changed"
"$GA" --agent "$T/agent" --out-dir "$T/assets" >/dev/null 2>"$T/err"
! grep -q "up to date" "$T/err" || fail "a changed agent was not rebuilt into the initrd"
cpio_cat "$initrd" init | cmp - "$T/agent" || fail "initrd /init is not the changed agent"
pass "a changed agent is rebuilt in"

expect_fail "$T/err" "$GA" --agent "$T/no-agent" --out-dir "$T/assets2"
grep -q "$T/no-agent" "$T/err" || fail "missing agent: error does not name it"
pass "missing agent rejected"
