#!/usr/bin/env bash
# Kubernetes' path through the installed runtime classes: a containerd with the cri plugin,
# CNI (bridge + host-local) in a network namespace made for the test (tests/cri/lib.sh's world,
# with only runc configured), then kata-deploy install against that containerd's config; a pod
# with runtime_handler kata and one with kata-qemu each run a container in a VM (CRI v1 through
# tests/cri/cri_client.py; the container prints the guest's kernel); kata-deploy cleanup
# restores the config (cmp) and the cri plugin serves runc alone again.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../../../../tests/cri/lib.sh
source "$REPO/tests/cri/lib.sh"
need containerd ctr qemu-system-x86_64 ip nsenter gcc protoc
if reason=$(cri_skip_reason); then skip "$reason"; fi
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || skip "python3-grpcio / python3-protobuf are not installed"
[ "${KATA_DEPLOY_TEST_VM:-1}" = 1 ] || skip "KATA_DEPLOY_TEST_VM=0 (no kata-agent in this build, or VMs not wanted)"
[ -x "${KATA_AGENT:-}" ] || skip "KATA_AGENT=${KATA_AGENT:-}: no kata-agent built"

PAYLOAD=$T/payload PREFIX=$T/opt/kata
make_payload "$PAYLOAD" --vm
on_exit 'cri_teardown >/dev/null 2>&1'
cri_setup --dir "$T/cri" 2>"$T/cri-setup.log" || fail "cri_setup: $(tail -5 "$T/cri-setup.log")"

# kata-deploy drives this containerd: its config, socket, PATH dir; restarting it is what
# tests/cri/lib.sh does for a node restart.
CONFIG=$CRI_DIR/containerd.toml CTR_SOCK=$CRI_SOCKET SHIM_DIR=$CRI_DIR/bin
cp -p "$CONFIG" "$T/config.toml.before"
cat >"$T/restart-containerd.sh" <<SH
#!/usr/bin/env bash
source "$REPO/tests/cri/lib.sh"
. "$CRI_DIR/cri.env"
cri_containerd_stop >/dev/null 2>&1 || true
cri_containerd_start
SH
chmod +x "$T/restart-containerd.sh"
mkdir -p "$T/opt"
deploy install --prefix "$PREFIX" --payload-dir "$PAYLOAD" || { show_deploy_log; fail "kata-deploy install failed"; }
served=$(cri_client Status '{"verbose": true}' | /usr/bin/python3 -c '
import json, sys
print(" ".join(sorted(json.loads(json.load(sys.stdin)["info"]["config"])["containerd"]["runtimes"])))')
[ "$served" = "kata kata-qemu runc" ] || fail "the cri plugin serves '$served', expected kata kata-qemu runc"
pass "installed into the CRI containerd; CRI Status serves: $served"

host=$(uname -r)
for handler in kata kata-qemu; do
  out=$(cri_netns env PYTHONPATH="$REPO/tests/cri" CRI_PROTO_BUILD_DIR="$CRI_DIR/proto-build" \
    /usr/bin/python3 - "$CRI_SOCKET" "$handler" "$CRI_LOG_DIR" "$CRI_BUSYBOX_IMAGE" <<'PY'
import os, sys, time
from cri_client import CriClient
sock, handler, log_root, image = sys.argv[1:5]
cri = CriClient(sock)
name = "deploy-" + handler
cfg = {"metadata": {"name": name, "uid": "uid-" + name, "namespace": "kata-deploy", "attempt": 0},
       "hostname": name, "log_directory": os.path.join(log_root, name), "linux": {}}
pod = cri.RunPodSandbox(config=cfg, runtime_handler=handler, _timeout=300).pod_sandbox_id
try:
    ccfg = {"metadata": {"name": "uname", "attempt": 0}, "image": {"image": image},
            "command": ["/bin/sh", "-c", "echo guest=$(uname -r)"], "log_path": "uname/0.log"}
    cid = cri.CreateContainer(pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg).container_id
    cri.StartContainer(container_id=cid)
    for _ in range(300):
        st = cri.ContainerStatus(container_id=cid).status
        if st.state == 2:  # CONTAINER_EXITED
            break
        time.sleep(0.2)
    with open(os.path.join(cfg["log_directory"], "uname", "0.log")) as f:
        lines = [l.split(" stdout F ", 1)[1] for l in f.read().splitlines() if " stdout F " in l]
    print("exit=%d %s" % (st.exit_code, " ".join(lines)))
finally:
    cri.StopPodSandbox(pod_sandbox_id=pod, _timeout=300)
    cri.RemovePodSandbox(pod_sandbox_id=pod)
PY
  ) || fail "CRI pod with runtime_handler $handler failed: $out"
  guest=$(sed -n 's/.*guest=\([^ ]*\).*/\1/p' <<<"$out")
  if [[ $out != exit=0* ]] || [ -z "$guest" ] || [ "$guest" = "$host" ]; then
    fail "runtime_handler $handler: expected exit 0 and the guest's kernel, got '$out' (host $host)"
  fi
  pass "CRI pod with runtime_handler $handler ran in a VM (guest kernel $guest, host $host)"
done

deploy cleanup --prefix "$PREFIX" || { show_deploy_log; fail "kata-deploy cleanup failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
nothing_changed "$PREFIX"
served=$(cri_client Status '{"verbose": true}' | /usr/bin/python3 -c '
import json, sys
print(" ".join(sorted(json.loads(json.load(sys.stdin)["info"]["config"])["containerd"]["runtimes"])))')
[ "$served" = runc ] || fail "after cleanup the cri plugin serves '$served', expected runc"
pass "cleanup: config restored (cmp), the cri plugin serves runc alone"
