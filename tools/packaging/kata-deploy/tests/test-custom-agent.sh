#!/usr/bin/env bash
# Seed 004's custom payload with a replaced agent, end to end: build-payload.sh makes the
# payload image from a release-style tarball (with a real guest initrd), custom-payload.sh --agent swaps a "rebuilt" agent
# into its initrd, kata-deploy installs that image through PAYLOAD_IMAGE (an oci-archive on
# the node; the registry path is tests/test-payload-registry.sh) and logs the taint warning,
# and a fresh VM started through the installed runtime class runs the new agent: its
# "agent started" line on the guest console carries the new version. Cleanup restores the
# config (cmp).
#
# The rebuilt agent is this build's kata-agent with its baked-in version string changed (same
# length, so nothing else moves): a second agent build just for a different version would cost
# minutes on these 2-core machines.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need containerd ctr umoci skopeo cpio qemu-system-x86_64
[ "$(id -u)" = 0 ] || skip "needs root (containerd and the VM's shim run as root)"
[ "${KATA_DEPLOY_TEST_VM:-1}" = 1 ] || skip "KATA_DEPLOY_TEST_VM=0 (no kata-agent in this build, or VMs not wanted)"
[ -x "${KATA_AGENT:-}" ] || skip "KATA_AGENT=${KATA_AGENT:-}: no kata-agent built"

PAYLOAD=$T/payload PREFIX=$T/opt/kata
make_payload "$PAYLOAD" --vm
old=$("$KATA_AGENT" --version | sed -n 's/^kata-agent version //p')
[ -n "$old" ] || fail "kata-agent --version printed no version"
new=$(/usr/bin/python3 - "$KATA_AGENT" "$T/kata-agent.custom" "$old" <<'PY'
import sys
src, dst, old = sys.argv[1:4]
data = open(src, "rb").read()
new = ("9.9.9-custom-" + "x" * len(old))[: len(old)]
if data.count(old.encode()) != 1:
    sys.exit("the version string %r is not in %s exactly once" % (old, src))
open(dst, "wb").write(data.replace(old.encode(), new.encode()))
print(new)
PY
) || fail "making the custom agent failed"
chmod +x "$T/kata-agent.custom"
[ "$("$T/kata-agent.custom" --version)" = "kata-agent version $new" ] || fail "the custom agent does not report $new"

# The base payload from a release-style tarball (opt/kata/ inside, xz).
mkdir -p "$T/release/opt"
cp -a "$PAYLOAD" "$T/release/opt/kata"
tar -C "$T/release" -I 'xz -0 -T2' -cf "$T/kata-static-test-x86_64.tar.xz" opt
TMPDIR=$T "$DEPLOY_DIR/build-payload.sh" --from-tarball "$T/kata-static-test-x86_64.tar.xz" \
  --installer "$KATA_DEPLOY" --push "oci-archive:$T/base.tar" >"$T/build.log" 2>&1 ||
  fail "build-payload.sh --from-tarball: $(cat "$T/build.log")"
TMPDIR=$T "$DEPLOY_DIR/custom-payload.sh" --from "oci-archive:$T/base.tar" --agent "$T/kata-agent.custom" \
  --push "oci-archive:$T/custom.tar" >"$T/custom.log" 2>&1 || fail "custom-payload.sh: $(cat "$T/custom.log")"
grep -q 'with agent in share/kata-containers/kata-containers-initrd.img' "$T/custom.log" ||
  fail "custom-payload.sh did not replace the agent in the initrd: $(cat "$T/custom.log")"
pass "custom payload oci-archive:$T/custom.tar: agent $new in its initrd (base agent $old)"

start_containerd
mkdir -p "$T/opt"
PAYLOAD_IMAGE=oci-archive:$T/custom.tar deploy install --prefix "$PREFIX" ||
  { show_deploy_log; fail "install of the custom payload failed"; }
grep -q '"tainted":"true"' "$T/deploy.log" || { show_deploy_log; fail "no taint warning"; }

"$REPO/tests/fixtures/make-busybox-image.sh" "$T/busybox.tar" kata-deploy-test/busybox:latest 2>/dev/null
ctr_ images import "$T/busybox.tar" >/dev/null
id=custom-agent-$$
ctr_ run -d --runtime io.containerd.kata.v2 \
  --runtime-config-path "$PREFIX/share/defaults/kata-containers/configuration-qemu.toml" \
  docker.io/kata-deploy-test/busybox:latest "$id" sleep 120 >/dev/null </dev/null ||
  fail "ctr run -d with the kata class failed"
console=/run/vc/vm/$id/console.log
line=""
for _ in $(seq 150); do
  line=$(grep -a -m1 '"msg":"agent started"' "$console" 2>/dev/null || true)
  [ -n "$line" ] && break
  sleep 0.2
done
[ -n "$line" ] || fail "no 'agent started' line on the guest console $console: $(tail -c 600 "$console" 2>/dev/null)"
grep -q "\"version\":\"$new\"" <<<"$line" || fail "the VM's agent is not the custom one: $line"
pass "a fresh VM runs the custom agent: $(grep -o '"version":"[^"]*"' <<<"$line")"
ctr_ task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
for _ in $(seq 50); do ctr_ task delete "$id" >/dev/null 2>&1 && break; sleep 0.2; done
ctr_ container delete "$id" >/dev/null 2>&1 || true

deploy cleanup --prefix "$PREFIX" || { show_deploy_log; fail "cleanup failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "cleanup left $PREFIX"
pass "cleanup: config restored (cmp), nothing left"
