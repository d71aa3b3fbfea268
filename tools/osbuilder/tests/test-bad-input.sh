#!/usr/bin/env bash
# Bad input fails with a message naming the offending path, and leaves nothing in the
# output location (an existing output stays as it was).
source "$(dirname "$0")/lib.sh"
K=$(debian_kernel)
mkdir "$T/out"
cp /bin/busybox "$T/agent"

# nothing_left DIR: no output and no temp file left behind
nothing_left() { [ -z "$(ls -A "$T/out")" ] || { ls -la "$T/out" >&2; fail "left behind in the output dir after: $1"; }; }

check() { # DESCRIPTION EXPECTED_TEXT CMD...
  local what=$1 text=$2
  shift 2
  expect_fail "$T/err" "$@"
  grep -qF -- "$text" "$T/err" || { cat "$T/err" >&2; fail "$what: error does not mention '$text'"; }
  nothing_left "$what"
  echo "  $what -> $(head -n1 "$T/err")"
}

check "missing agent" "$T/no-such-agent" \
  "$OSBUILDER" initrd --agent "$T/no-such-agent" --kernel-dir "$K" --out "$T/out/initrd.img"
check "no --agent" "--agent" \
  "$OSBUILDER" initrd --kernel-dir "$K" --out "$T/out/initrd.img"
cp "$T/agent" "$T/agent-noexec" && chmod 0644 "$T/agent-noexec"
check "agent not executable" "$T/agent-noexec" \
  "$OSBUILDER" initrd --agent "$T/agent-noexec" --kernel-dir "$K" --out "$T/out/initrd.img"
check "missing kernel dir" "$T/no-such-kernel" \
  "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$T/no-such-kernel" --out "$T/out/initrd.img"
mkdir "$T/empty-kernel"
check "kernel dir without release" "$T/empty-kernel" \
  "$OSBUILDER" image --agent "$T/agent" --kernel-dir "$T/empty-kernel" --out "$T/out/image.img"
check "missing extra source" "$T/no-such-extra" \
  "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/out/initrd.img" --extra "$T/no-such-extra:/etc/x"
check "relative extra destination" "etc/x" \
  "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/out/initrd.img" --extra "$T/agent:etc/x"
check "unknown compression" "lz5" \
  "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/out/initrd.img" --compression lz5
check "missing output dir" "$T/no-such-dir" \
  "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$K" --out "$T/no-such-dir/initrd.img"
check "floor without kernel dir" "$T/no-such-kernel" \
  "$OSBUILDER" floor-initrd --kernel-dir "$T/no-such-kernel" --out "$T/out/floor.img"

# A failure in the middle of a build (a module file unreadable by cpio: here, a kernel dir
# whose modules.dep names a module that is not there) keeps the existing output intact.
cp -a "$K" "$T/broken-kernel"
echo "kernel/fs/missing/missing.ko: kernel/fs/missing/gone.ko" >>"$T/broken-kernel/modules/lib/modules/$(cat "$K/release")/modules.dep"
echo "previous build" >"$T/out/initrd.img"
expect_fail "$T/err" "$OSBUILDER" initrd --agent "$T/agent" --kernel-dir "$T/broken-kernel" --out "$T/out/initrd.img"
grep -q "gone.ko" "$T/err" || { cat "$T/err" >&2; fail "broken modules.dep: error does not name the missing module"; }
[ "$(cat "$T/out/initrd.img")" = "previous build" ] || fail "a failed build changed the existing output"
[ "$(ls -A "$T/out")" = initrd.img ] || { ls -la "$T/out" >&2; fail "a failed build left temp files in the output dir"; }
rm "$T/out/initrd.img"
echo "  broken modules.dep -> $(head -n1 "$T/err")"

# replace-agent on bad targets leaves them untouched.
echo "not an initrd" >"$T/not-initrd"
check "replace-agent on a non-initrd" "$T/not-initrd" \
  "$OSBUILDER" replace-agent --agent "$T/agent" --target "$T/not-initrd"
[ "$(cat "$T/not-initrd")" = "not an initrd" ] || fail "replace-agent changed a file it rejected"
check "replace-agent on a missing target" "$T/no-such-initrd" \
  "$OSBUILDER" replace-agent --agent "$T/agent" --target "$T/no-such-initrd"
check "replace-agent with a missing agent" "$T/no-such-agent" \
  "$OSBUILDER" replace-agent --agent "$T/no-such-agent" --target "$T/not-initrd"
mkdir "$T/no-configs"
check "replace-agent --all without configs" "no initrd = or image =" \
  env KATA_CONFIG_SEARCH_DIRS="$T/no-configs" "$OSBUILDER" replace-agent --agent "$T/agent" --all
check "unknown subcommand" "frobnicate" "$OSBUILDER" frobnicate
pass "bad input rejected with clear errors, nothing left behind"
