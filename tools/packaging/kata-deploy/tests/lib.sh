# shellcheck shell=bash
# Helpers for the kata-deploy tests: a temp dir, a private containerd (own root, state, socket
# and config file under it, with the cri plugin on), a restart command for it, and a payload
# in the /opt/kata layout made from this build's shim. Source it; everything it starts is
# stopped and everything under $T removed on exit, also on failure.
#
# The test's binaries come from the environment (CMake sets them):
#   KATA_DEPLOY   the kata-deploy binary      KATA_SHIM    containerd-shim-kata-v2
#   KATA_AGENT    kata-agent (for VM tests)   KATA_DEPLOY_ASSETS  guest assets out dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)
# shellcheck disable=SC2034 # used by the test scripts
DEPLOY_DIR="$REPO/tools/packaging/kata-deploy"
TEST_NAME=$(basename "$0" .sh)
SKIP=77

fail() { echo "FAIL ($TEST_NAME): $*" >&2; exit 1; }
pass() { echo "ok ($TEST_NAME): $*"; }
skip() { echo "SKIP ($TEST_NAME): $*"; exit "$SKIP"; }
need() { # CMD... : skip naming the first tool that is absent
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"; done
}

T=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX")
CLEANUP_HOOKS=()
on_exit() { CLEANUP_HOOKS+=("$1"); }
_test_cleanup() {
  local rc=$? h i
  for ((i = ${#CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
    h=${CLEANUP_HOOKS[i]}
    eval "$h" || true
  done
  if [ "$rc" != 0 ] && [ "$rc" != "$SKIP" ] && [ -f "$T/containerd.log" ]; then
    echo "--- errors in the test's containerd log:" >&2
    grep -E 'level=(error|fatal|warning)' "$T/containerd.log" | grep -v 'failed to load cni during init' |
      tail -n 15 >&2 || true
  fi
  awk -v d="$T" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
  rm -rf "$T"
  exit "$rc"
}
trap _test_cleanup EXIT
trap 'exit 143' TERM INT

[ -x "${KATA_DEPLOY:-}" ] || fail "KATA_DEPLOY=${KATA_DEPLOY:-}: not an executable (run through ctest)"

# ---------------------------------------------------------------------------------------
# the private containerd

CTR_SOCK=$T/run/containerd.sock
CTR_NS=kata-deploy-test
CONFIG=$T/etc/containerd/config.toml
SHIM_DIR=$T/shim-bin
ctr_() { ctr --address "$CTR_SOCK" --namespace "$CTR_NS" "$@"; }

# write_containerd_config: the "user's" config, with comments and its own runc runtime, which
# the installer must leave alone.
write_containerd_config() {
  mkdir -p "$(dirname "$CONFIG")" "$T/run" "$SHIM_DIR"
  cat >"$CONFIG" <<TOML
# containerd config of the kata-deploy test (a user's file: kept byte for byte)
version = 2
root = "$T/root"
state = "$T/state"

[grpc]
  address = "$CTR_SOCK"   # private socket
[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$T/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:kata-deploy-test"
  # root here lacks CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$T/cni/bin"
    conf_dir = "$T/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
TOML
  cp -p "$CONFIG" "$T/config.toml.before"
}

# The restart command the installer is given: what systemctl restart would do for this
# containerd (stop it, start it again with the same config, PATH with the shim dir).
write_restart_script() {
  cat >"$T/restart-containerd.sh" <<SH
#!/bin/sh
pidfile="$T/containerd.pid"
if [ -f "\$pidfile" ]; then
  pid=\$(cat "\$pidfile")
  kill -TERM "\$pid" 2>/dev/null
  i=0
  while kill -0 "\$pid" 2>/dev/null && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
  kill -KILL "\$pid" 2>/dev/null
fi
PATH="$SHIM_DIR:\$PATH" setsid containerd --config "$CONFIG" >>"$T/containerd.log" 2>&1 </dev/null &
echo \$! >"\$pidfile"
SH
  chmod +x "$T/restart-containerd.sh"
}

containerd_pid() { cat "$T/containerd.pid" 2>/dev/null; }

wait_containerd() {
  local _
  for _ in $(seq 150); do
    ctr_ version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "containerd did not answer on $CTR_SOCK: $(tail -5 "$T/containerd.log")"
}

stop_containerd() {
  local pid id
  if [ -S "$CTR_SOCK" ]; then
    for id in $(ctr_ task ls -q 2>/dev/null); do
      ctr_ task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
      for _ in $(seq 25); do ctr_ task delete "$id" >/dev/null 2>&1 && break; sleep 0.2; done
    done
    for id in $(ctr_ container ls -q 2>/dev/null); do ctr_ container delete "$id" >/dev/null 2>&1 || true; done
  fi
  pid=$(containerd_pid) || return 0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$T/containerd.pid"
}

start_containerd() {
  need containerd ctr
  write_containerd_config
  write_restart_script
  on_exit stop_containerd
  "$T/restart-containerd.sh"
  wait_containerd
}

# dump_runtimes: "name runtime_type ConfigPath" for every CRI runtime in containerd's
# effective config (the main file plus its imports).
dump_runtimes() {
  containerd --config "$CONFIG" config dump | /usr/bin/python3 -c '
import sys, tomllib
cfg = tomllib.loads(sys.stdin.read())
rts = cfg.get("plugins", {}).get("io.containerd.grpc.v1.cri", {}).get("containerd", {}).get("runtimes", {})
for name, rt in sorted(rts.items()):
    print(name, rt.get("runtime_type", ""), rt.get("options", {}).get("ConfigPath", "-"))
'
}

# cri_runtimes: the runtimes the running containerd's CRI serves (CRI Status, verbose: the
# config the cri plugin runs with), through the repo's CRI client; "" when it cannot ask.
cri_runtimes() {
  /usr/bin/python3 -c 'import grpc' 2>/dev/null || return 0
  CRI_PROTO_BUILD_DIR=$T/cri-proto /usr/bin/python3 "$REPO/tests/cri/cri_client.py" \
    --socket "$CTR_SOCK" Status '{"verbose": true}' | /usr/bin/python3 -c '
import json, sys
info = json.load(sys.stdin)["info"]
cfg = json.loads(info["config"])
print(" ".join(sorted(cfg["containerd"]["runtimes"])))
'
}

# ---------------------------------------------------------------------------------------
# payloads

# make_payload DIR [--vm]: a payload in the /opt/kata layout around this build's shim, with
# the shipped configuration-qemu.toml (paths under /opt/kata, as a release has them) and, with
# --vm, the guest kernel and initrd built by tools/osbuilder for this build's agent.
make_payload() {
  local dir=$1 vm=${2:-} out kernel initrd
  [ -x "${KATA_SHIM:-}" ] || fail "KATA_SHIM=${KATA_SHIM:-}: not an executable"
  mkdir -p "$dir/bin" "$dir/share/kata-containers" "$dir/share/defaults/kata-containers"
  cp "$KATA_SHIM" "$dir/bin/containerd-shim-kata-v2"
  [ "${PAYLOAD_STRIP:-0}" = 1 ] && strip --strip-all "$dir/bin/containerd-shim-kata-v2"
  ln -s containerd-shim-kata-v2 "$dir/bin/containerd-shim-kata-qemu-v2"
  sed 's|@PREFIX@|/opt/kata|g' "$REPO/src/runtime/config/configuration-qemu.toml.in" \
    >"$dir/share/defaults/kata-containers/configuration-qemu.toml"
  ln -s configuration-qemu.toml "$dir/share/defaults/kata-containers/configuration.toml"
  if [ "$vm" = --vm ]; then
    [ -x "${KATA_AGENT:-}" ] || fail "KATA_AGENT=${KATA_AGENT:-}: not an executable"
    out=$("$REPO/tools/osbuilder/build-guest-assets.sh" --agent "$KATA_AGENT" \
      --out-dir "${KATA_DEPLOY_ASSETS:-$T/assets}") || fail "build-guest-assets.sh failed"
    kernel=$(sed -n 's/^kernel=//p' <<<"$out")
    initrd=$(sed -n 's/^initrd=//p' <<<"$out")
    cp "$kernel" "$dir/share/kata-containers/vmlinux.container"
    cp "$initrd" "$dir/share/kata-containers/kata-containers-initrd.img"
  else
    echo "no kernel in this test payload" >"$dir/share/kata-containers/vmlinux.container"
    echo "no initrd in this test payload" >"$dir/share/kata-containers/kata-containers-initrd.img"
  fi
  echo "test-payload" >"$dir/VERSION"
}

# deploy ARGS...: kata-deploy with the test's containerd, shim dir and restart command; its
# stderr (the JSON log) is kept in $T/deploy.log, and shown on failure.
deploy() {
  local rc=0
  "$KATA_DEPLOY" --containerd-config "$CONFIG" --containerd-socket "$CTR_SOCK" \
    --shim-dir "$SHIM_DIR" --restart-command "$T/restart-containerd.sh" --timeout 60 \
    "$@" >"$T/deploy.out" 2>"$T/deploy.log" || rc=$?
  return "$rc"
}
show_deploy_log() { echo "--- kata-deploy log:" >&2; cat "$T/deploy.log" >&2; }

# expect_deploy_fail PATTERN ARGS...: kata-deploy must fail, its error matching PATTERN (grep -E)
expect_deploy_fail() {
  local pattern=$1
  shift
  if deploy "$@"; then show_deploy_log; fail "expected kata-deploy $* to fail"; fi
  grep -Eq -- "$pattern" "$T/deploy.log" ||
    { show_deploy_log; fail "kata-deploy $*: error does not match /$pattern/"; }
  grep '^kata-deploy: error:' "$T/deploy.log" | sed 's/^/    /'
}

# nothing_changed PREFIX: the config is as the test wrote it, no drop-in, no symlinks, no
# prefix state.
nothing_changed() {
  cmp -s "$CONFIG" "$T/config.toml.before" || fail "the containerd config changed: $(diff "$T/config.toml.before" "$CONFIG")"
  [ ! -e "$(dirname "$CONFIG")/conf.d" ] || fail "a conf.d dir was left: $(ls -la "$(dirname "$CONFIG")/conf.d")"
  [ -z "$(ls -A "$SHIM_DIR")" ] || fail "the shim dir is not empty: $(ls -la "$SHIM_DIR")"
  [ ! -e "$1/.kata-deploy" ] || fail "$1/.kata-deploy was left"
}
