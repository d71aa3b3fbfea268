#!/usr/bin/env bash
# replace-shim.sh (seed 000: "replace the shim for the qemu-sev runtime class"): after a
# kata-deploy install of the classes kata, kata-qemu and kata-qemu-sev into a private
# containerd, the qemu-sev class gets its own shim; it answers with the new version while
# kata-qemu's and kata's still answer with the installed one; with VMs, ctr run of kata-qemu-sev
# goes through the new shim and kata-qemu does not; --restore puts the alias back; bad input is
# refused naming the reason; kata-deploy cleanup still restores containerd's config (cmp).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need containerd ctr
[ "$(id -u)" = 0 ] || skip "needs root (containerd and the VM's shim run as root)"
REPLACE="$DEPLOY_DIR/replace-shim.sh"

VM=${KATA_DEPLOY_TEST_VM:-1}
if [ "$VM" = 1 ]; then
  command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 absent: not booting VMs"; VM=0; }
fi
PAYLOAD=$T/payload PREFIX=$T/opt/kata
if [ "$VM" = 1 ]; then make_payload "$PAYLOAD" --vm; else make_payload "$PAYLOAD"; fi
ln -s containerd-shim-kata-v2 "$PAYLOAD/bin/containerd-shim-kata-qemu-sev-v2"
# (this host has no SEV: the qemu-sev class runs the plain QEMU configuration)
cp "$PAYLOAD/share/defaults/kata-containers/configuration-qemu.toml" \
  "$PAYLOAD/share/defaults/kata-containers/configuration-qemu-sev.toml"
start_containerd
deploy install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --shims "qemu qemu-sev" ||
  { show_deploy_log; fail "install of qemu and qemu-sev failed"; }

version_of() { "$PREFIX/bin/$1" --version | sed -n 's/^ *Version: //p'; }
old=$(version_of containerd-shim-kata-qemu-sev-v2)
[ -n "$old" ] || fail "the installed shim reports no version"

# The "rebuilt" shim: reports another version and records each start, then runs the real
# shim under the class's name.
cat >"$T/new-shim" <<SH
#!/bin/bash
case "\${1:-}" in -v | --version) printf '%s:\n  Version: 9.9.9-replaced\n' "\$(basename "\$0")"; exit 0 ;; esac
echo "\$*" >>"$T/new-shim.calls"
exec -a "\$0" "$PREFIX/bin/containerd-shim-kata-v2" "\$@"
SH
chmod +x "$T/new-shim"

# ---- bad input
expect_fail() { # PATTERN ARGS...
  local pattern=$1
  shift
  if "$REPLACE" "$@" >/dev/null 2>"$T/err"; then fail "replace-shim.sh $* worked"; fi
  grep -Eq -- "$pattern" "$T/err" || fail "replace-shim.sh $*: error '$(cat "$T/err")' does not match /$pattern/"
  sed 's/^/    /' "$T/err"
}
expect_fail "runtime class kata: its shim containerd-shim-kata-v2 is the binary every class's alias points to" \
  --prefix "$PREFIX" --runtime-class kata --shim "$T/new-shim"
expect_fail "runtime class clh: .*containerd-shim-kata-clh-v2 does not exist \(classes here: qemu qemu-sev \)" \
  --prefix "$PREFIX" --runtime-class clh --shim "$T/new-shim"
expect_fail "--shim $T/nope: no such file" --prefix "$PREFIX" --runtime-class qemu-sev --shim "$T/nope"
expect_fail "runtime class qemu-sev: nothing to restore" --prefix "$PREFIX" --runtime-class qemu-sev --restore
expect_fail "prefix $T/none: no bin directory" --prefix "$T/none" --runtime-class qemu-sev --shim "$T/new-shim"
[ "$(readlink "$PREFIX/bin/containerd-shim-kata-qemu-sev-v2")" = containerd-shim-kata-v2 ] || fail "bad input changed the qemu-sev shim"
pass "bad input refused, nothing changed"

# ---- replace the qemu-sev class's shim
cp "$PREFIX/bin/containerd-shim-kata-v2" "$T/main-shim.before"
"$REPLACE" --prefix "$PREFIX" --runtime-class kata-qemu-sev --shim "$T/new-shim" 2>&1 | sed 's/^/    /'
[ "$(version_of containerd-shim-kata-qemu-sev-v2)" = 9.9.9-replaced ] || fail "qemu-sev does not answer with the new version"
[ "$(version_of containerd-shim-kata-qemu-v2)" = "$old" ] || fail "qemu's shim changed"
[ "$(version_of containerd-shim-kata-v2)" = "$old" ] || fail "kata's shim changed"
cmp -s "$T/main-shim.before" "$PREFIX/bin/containerd-shim-kata-v2" || fail "the main shim binary changed"
[ "$(readlink "$SHIM_DIR/containerd-shim-kata-qemu-sev-v2")" = "$PREFIX/bin/containerd-shim-kata-qemu-sev-v2" ] ||
  fail "the shim dir link of qemu-sev moved"
pass "qemu-sev answers $(version_of containerd-shim-kata-qemu-sev-v2); qemu and kata still answer $old"

if [ "$VM" = 1 ]; then
  need umoci skopeo
  "$REPO/tests/fixtures/make-busybox-image.sh" "$T/busybox.tar" kata-deploy-test/busybox:latest 2>/dev/null
  ctr_ images import "$T/busybox.tar" >/dev/null
  image=docker.io/kata-deploy-test/busybox:latest
  defaults=$PREFIX/share/defaults/kata-containers
  run_class() { # SHIM CONFIG ID
    timeout 300 ctr --address "$CTR_SOCK" --namespace "$CTR_NS" run --rm --runtime "io.containerd.kata-$1.v2" \
      --runtime-config-path "$defaults/$2" "$image" "$3" uname -r </dev/null 2>&1
  }
  out=$(run_class qemu-sev configuration-qemu-sev.toml rs-sev) || fail "ctr run with kata-qemu-sev: $out"
  [ -s "$T/new-shim.calls" ] || fail "the kata-qemu-sev container did not go through the new shim"
  calls=$(wc -l <"$T/new-shim.calls")
  out2=$(run_class qemu configuration-qemu.toml rs-qemu) || fail "ctr run with kata-qemu: $out2"
  [ "$(wc -l <"$T/new-shim.calls")" = "$calls" ] || fail "the kata-qemu container went through the new shim"
  pass "ctr run: kata-qemu-sev through the new shim ($calls shim calls, guest $out), kata-qemu through the old one (guest $out2)"
fi

# ---- restore, and a second replacement keeps the first original
"$REPLACE" --prefix "$PREFIX" --runtime-class qemu-sev --shim "$T/new-shim" >/dev/null 2>&1
"$REPLACE" --prefix "$PREFIX" --runtime-class qemu-sev --shim "$T/new-shim" >/dev/null 2>&1
"$REPLACE" --prefix "$PREFIX" --runtime-class qemu-sev --restore 2>&1 | sed 's/^/    /'
[ "$(readlink "$PREFIX/bin/containerd-shim-kata-qemu-sev-v2")" = containerd-shim-kata-v2 ] || fail "--restore did not put the alias back"
[ "$(version_of containerd-shim-kata-qemu-sev-v2)" = "$old" ] || fail "qemu-sev does not answer with $old after --restore"
[ ! -e "$PREFIX/.replace-shim" ] || fail "--restore left $PREFIX/.replace-shim"
pass "--restore: qemu-sev is the alias again and answers $old"

# ---- kata-deploy cleanup with a replaced shim still in place
"$REPLACE" --prefix "$PREFIX" --runtime-class qemu-sev --shim "$T/new-shim" >/dev/null 2>&1
deploy cleanup --prefix "$PREFIX" || { show_deploy_log; fail "cleanup failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "cleanup left $PREFIX: $(find "$PREFIX")"
pass "kata-deploy cleanup with a replaced shim: nothing left, config restored (cmp)"
