#!/usr/bin/env bash
# kata-deploy against a real containerd (a private one this test starts, with the cri plugin):
#   - bad input (missing payload, unreadable / invalid / version 1 config, a prefix that is a
#     file) fails naming the thing and the reason, and changes nothing;
#   - install: the handlers kata and kata-qemu are in containerd's effective config with their
#     ConfigPath under the prefix, the restarted containerd's cri plugin serves them, the shim
#     symlinks are in place, the node label is set (through KUBECTL);
#   - ctr run with each class's runtime_type and ConfigPath boots a VM (guest kernel shown)
#     unless KATA_DEPLOY_TEST_VM=0;
#   - cleanup: the config is byte-identical to before (cmp), drop-in, symlinks, payload and
#     label are gone, and containerd is serving.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need containerd ctr
[ "$(id -u)" = 0 ] || skip "needs root (containerd and the VM's shim run as root)"

VM=${KATA_DEPLOY_TEST_VM:-1}
if [ "$VM" = 1 ]; then
  command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 absent: not booting VMs"; VM=0; }
fi

PREFIX=$T/opt/kata
PAYLOAD=$T/payload
if [ "$VM" = 1 ]; then make_payload "$PAYLOAD" --vm; else make_payload "$PAYLOAD"; fi
start_containerd
pid_before=$(containerd_pid)

# A kubectl that records its arguments: there is no API server on these machines.
mkdir -p "$T/kubectl-bin"
cat >"$T/kubectl-bin/kubectl" <<SH
#!/bin/sh
echo "\$*" >>"$T/kubectl.calls"
SH
chmod +x "$T/kubectl-bin/kubectl"

# ---- bad input: each a clear error, nothing changed
expect_deploy_fail "payload $T/nope: No such file or directory" \
  install --prefix "$PREFIX" --payload-dir "$T/nope"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "a failed install created the prefix"

mkdir -p "$T/empty-payload"
expect_deploy_fail "payload $T/empty-payload: bin/containerd-shim-kata-v2 is missing" \
  install --prefix "$PREFIX" --payload-dir "$T/empty-payload"
nothing_changed "$PREFIX"

expect_deploy_fail "payload $PAYLOAD: share/defaults/kata-containers/configuration-qemu-sev.toml \(for runtime class kata-qemu-sev\) is missing" \
  install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --shims "qemu qemu-sev"
nothing_changed "$PREFIX"

touch "$T/prefix-file"
expect_deploy_fail "prefix $T/prefix-file: not a directory" \
  install --prefix "$T/prefix-file" --payload-dir "$PAYLOAD"
nothing_changed "$T/prefix-file"

expect_deploy_fail "containerd config: cannot read it: open $T/missing.toml: No such file" \
  install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --containerd-config "$T/missing.toml"

printf 'version = 2\n[plugins\nroot = "/x"\n' >"$T/bad.toml"
expect_deploy_fail "containerd config $T/bad.toml:2:[0-9]+: " \
  install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --containerd-config "$T/bad.toml"
printf 'version = 2\n[plugins\nroot = "/x"\n' | cmp -s - "$T/bad.toml" || fail "the invalid config was changed"

printf 'root = "/x"\n[plugins.cri]\n  sandbox_image = "pause"\n' >"$T/v1.toml"
expect_deploy_fail "containerd config $T/v1.toml: config version 1 \(no version key\) is not supported" \
  install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --containerd-config "$T/v1.toml"
[ ! -e "$T/conf.d" ] || fail "a drop-in dir was made for the version 1 config"
nothing_changed "$PREFIX"
[ "$(containerd_pid)" = "$pid_before" ] || fail "containerd was restarted by a failed install"
pass "bad input refused, nothing changed"

# A restart that fails is rolled back: payload, symlinks, drop-in and imports line gone again.
mkdir -p "$T/opt"
expect_deploy_fail "restarting containerd with \`false\`: exit 1" \
  install --prefix "$PREFIX" --payload-dir "$PAYLOAD" --restart-command false
grep -q '"msg":"install failed; undoing what it did"' "$T/deploy.log" || fail "no rollback logged"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "the rolled back install left $PREFIX"
rmdir "$T/opt"
pass "a failed containerd restart is rolled back, nothing left"

# ---- install (payload and node from the environment, as the DaemonSet sets them)
mkdir -p "$T/opt" # the prefix's parent exists; the prefix itself is made by the install
if ! INSTALLATION_PREFIX=$PREFIX PAYLOAD_DIR=$PAYLOAD NODE_NAME=node-a \
  KUBECTL=$T/kubectl-bin/kubectl deploy install; then
  show_deploy_log
  fail "kata-deploy install failed"
fi
grep -q '"msg":"containerd serves the runtimes"' "$T/deploy.log" || { show_deploy_log; fail "no serving check in the log"; }
[ "$(containerd_pid)" != "$pid_before" ] || fail "containerd was not restarted"
wait_containerd

dropin=$(dirname "$CONFIG")/conf.d/kata-deploy.toml
[ -f "$dropin" ] || fail "no drop-in at $dropin"
# The user's file: the one imports line added, nothing else.
diff "$T/config.toml.before" "$CONFIG" >"$T/config.diff" || true
if ! { [ "$(grep -c '^[<>]' "$T/config.diff")" = 1 ] &&
  grep -qx "> imports = \[\"$dropin\"\]" "$T/config.diff"; }; then
  fail "install changed more than the imports line: $(cat "$T/config.diff")"
fi

dump_runtimes >"$T/runtimes"
sed 's/^/    effective: /' "$T/runtimes"
defaults=$PREFIX/share/defaults/kata-containers
grep -qx "kata io.containerd.kata.v2 $defaults/configuration-qemu.toml" "$T/runtimes" || fail "kata not in the effective config"
grep -qx "kata-qemu io.containerd.kata-qemu.v2 $defaults/configuration-qemu.toml" "$T/runtimes" || fail "kata-qemu not in the effective config"
grep -q '^runc io.containerd.runc.v2' "$T/runtimes" || fail "the user's runc runtime is gone"
containerd --config "$CONFIG" config dump | /usr/bin/python3 -c '
import sys, tomllib
rts = tomllib.loads(sys.stdin.read())["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
for name in ("kata", "kata-qemu"):
    rt = rts[name]
    assert rt.get("privileged_without_host_devices") is True, (name, rt)
    assert rt.get("pod_annotations") == ["io.katacontainers.*"], (name, rt)
' || fail "kata/kata-qemu lack privileged_without_host_devices or pod_annotations in the effective config"
# containerd 1.6 lets an imported plugin table replace the main file's: the user's cri
# settings must still be in effect.
containerd --config "$CONFIG" config dump >"$T/dump.toml"
if ! { grep -q 'sandbox_image = "registry.k8s.io/pause:kata-deploy-test"' "$T/dump.toml" &&
  grep -q 'restrict_oom_score_adj = true' "$T/dump.toml"; }; then
  fail "the user's cri settings are not in effect after install: $(grep -E 'sandbox_image|restrict_oom' "$T/dump.toml")"
fi
served=$(cri_runtimes)
if [ -n "$served" ]; then
  echo "    CRI Status (verbose) serves: $served"
  [[ " $served " == *" kata "* && " $served " == *" kata-qemu "* && " $served " == *" runc "* ]] ||
    fail "the running containerd's cri plugin does not serve kata and kata-qemu: $served"
else
  echo "    (python3-grpcio absent: CRI Status not asked; containerd config dump and ctr plugins ls only)"
fi
for b in containerd-shim-kata-v2 containerd-shim-kata-qemu-v2; do
  [ "$(readlink "$SHIM_DIR/$b")" = "$PREFIX/bin/$b" ] || fail "$SHIM_DIR/$b is not a symlink to $PREFIX/bin/$b"
  [ -x "$SHIM_DIR/$b" ] || fail "$SHIM_DIR/$b does not resolve to an executable"
done
grep -q "^kernel = \"$PREFIX/share/kata-containers/vmlinux.container\"" "$defaults/configuration-qemu.toml" ||
  fail "configuration-qemu.toml does not name the kernel under the prefix"
grep -qx "label node node-a katacontainers.io/kata-runtime=true --overwrite" "$T/kubectl.calls" ||
  fail "the node was not labelled: $(cat "$T/kubectl.calls" 2>/dev/null)"
pass "installed: runtimes kata and kata-qemu in the effective config and served, shims linked, node labelled"

# Installing again is harmless and keeps the original for cleanup.
deploy install --prefix "$PREFIX" --payload-dir "$PAYLOAD" || { show_deploy_log; fail "second install failed"; }
grep -q '"msg":"not labelling a node: NODE_NAME (--node-name) is not set"' "$T/deploy.log" ||
  { show_deploy_log; fail "no log line saying why the node was not labelled"; }
pass "second install: no change, label skipped naming why"

# ---- a container in a VM with each runtime class
if [ "$VM" = 1 ]; then
  need umoci skopeo
  "$REPO/tests/fixtures/make-busybox-image.sh" "$T/busybox.tar" kata-deploy-test/busybox:latest 2>/dev/null
  ctr_ images import "$T/busybox.tar" >/dev/null
  image=docker.io/kata-deploy-test/busybox:latest
  host_release=$(uname -r)
  while read -r name type cfgpath; do
    case $name in kata | kata-qemu) ;; *) continue ;; esac
    start=$(date +%s)
    # shellcheck disable=SC2016 # expanded in the guest
    out=$(timeout 300 ctr --address "$CTR_SOCK" --namespace "$CTR_NS" run --rm \
      --runtime "$type" --runtime-config-path "$cfgpath" "$image" "deploy-$name" \
      sh -c 'echo guest=$(uname -r)' 2>&1 </dev/null) || fail "ctr run --runtime $type: $out"
    guest=$(sed -n 's/^guest=//p' <<<"$out" | tr -d '\r')
    if [ -z "$guest" ] || [ "$guest" = "$host_release" ]; then
      fail "runtime class $name: expected the guest's kernel, got '$out' (host $host_release)"
    fi
    pass "runtime class $name: ctr run --runtime $type ran in a VM (guest kernel $guest, host $host_release, $(($(date +%s) - start)) s)"
  done <"$T/runtimes"
else
  echo "    KATA_DEPLOY_TEST_VM=0: not booting VMs"
fi

# ---- cleanup
deploy cleanup --prefix "$PREFIX" --node-name node-a --kubectl "$T/kubectl-bin/kubectl" ||
  { show_deploy_log; fail "kata-deploy cleanup failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
[ "$(stat -c %a "$CONFIG")" = "$(stat -c %a "$T/config.toml.before")" ] || fail "the config's mode changed"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "cleanup left $PREFIX: $(find "$PREFIX" | head)"
[ -d "$T/opt" ] || fail "cleanup removed $T/opt, which it did not create"
grep -qx "label node node-a katacontainers.io/kata-runtime-" "$T/kubectl.calls" ||
  fail "the node label was not removed: $(cat "$T/kubectl.calls")"
wait_containerd
dump_runtimes >"$T/runtimes.after"
if grep -q '^kata' "$T/runtimes.after"; then fail "kata runtimes still configured: $(cat "$T/runtimes.after")"; fi
served=$(cri_runtimes)
[ -z "$served" ] || [ "$served" = runc ] || fail "CRI still serves: $served"
ctr_ plugins ls | awk '$2 == "cri" { print $NF }' | grep -qx ok || fail "the cri plugin is not ok after cleanup"
pass "cleanup: config byte-identical (cmp), nothing left, label removed, containerd serving${served:+ ($served)}"

# ---- the user edits the config between install and cleanup: only our imports entry goes
deploy install --prefix "$PREFIX" --payload-dir "$PAYLOAD" || { show_deploy_log; fail "install (for the edit case) failed"; }
printf '\n[debug]\n  level = "info" # added after the install\n' >>"$CONFIG"
{ cat "$T/config.toml.before"; printf '\n[debug]\n  level = "info" # added after the install\n'; } >"$T/config.toml.edited"
deploy cleanup --prefix "$PREFIX" || { show_deploy_log; fail "cleanup after an edit failed"; }
grep -q '"msg":"containerd config was changed after the install' "$T/deploy.log" || { show_deploy_log; fail "no warning about the edited config"; }
cmp "$T/config.toml.edited" "$CONFIG" || fail "cleanup of an edited config did not keep the edit and drop only the imports line"
cp -p "$T/config.toml.before" "$CONFIG"
wait_containerd
pass "config edited after install: cleanup removed only the imports line, kept the edit"

# ---- reset: restart + unlabel, on a node without an install
deploy reset --prefix "$PREFIX" --node-name node-a --kubectl "$T/kubectl-bin/kubectl" ||
  { show_deploy_log; fail "kata-deploy reset failed"; }
wait_containerd
[ "$(grep -c 'katacontainers.io/kata-runtime-' "$T/kubectl.calls")" = 2 ] || fail "reset did not unlabel"
deploy reset --prefix "$PREFIX" --node-name node-a --kubectl /nonexistent/kubectl ||
  { show_deploy_log; fail "kata-deploy reset without kubectl failed"; }
grep -q '"msg":"not unlabelling node node-a: /nonexistent/kubectl not found on PATH"' "$T/deploy.log" ||
  { show_deploy_log; fail "no log line naming the missing kubectl"; }
pass "reset: containerd restarted and serving, node unlabelled (kubectl absent: skipped, saying why)"
