# shellcheck shell=bash
# tests/e2e/lib.sh: shell helpers for a private containerd driving containerd-shim-kata-v2
# (sourced by bench/ctr/run.sh; the contract is in bench/README.md). The C++ e2e tests
# (shim_e2e_test.cpp) set up the same world.
#
#   e2e_setup --dir DIR --shim PATH --agent PATH
#       guest assets (build-guest-assets.sh, cached), a kata configuration, a containerd with
#       root/state/socket under DIR and the shim on its PATH, the busybox-static image
#       imported. Sets E2E_DIR E2E_CTR_ADDRESS E2E_NAMESPACE E2E_IMAGE E2E_KATA_CONFIG
#       E2E_KERNEL E2E_KERNEL_DIR E2E_INITRD E2E_GUEST_RELEASE E2E_CONTAINERD_PID.
#   e2e_teardown
#       kills leftover tasks, stops containerd, unmounts what is mounted under DIR. Safe after a
#       partial e2e_setup. DIR itself is the caller's.

_e2e_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

_e2e_err() { echo "e2e: $*" >&2; return 1; }

_e2e_ctr() { ctr --address "$E2E_CTR_ADDRESS" --namespace "$E2E_NAMESPACE" "$@"; }

e2e_write_kata_config() { # FILE KERNEL INITRD
  cat >"$1" <<TOML
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
kernel = "$2"
initrd = "$3"
machine_type = "q35"
accelerator = "auto"
default_memory = 512
shared_fs = "virtio-9p"
msize_9p = 262144
disable_nesting_checks = true
[agent.kata]
dial_timeout = 60
[runtime]
enable_debug = true
TOML
}

e2e_setup() {
  local dir="" shim="" agent=""
  while (($#)); do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      --shim) shim=$2; shift 2 ;;
      --agent) agent=$2; shift 2 ;;
      *) _e2e_err "e2e_setup: unknown argument $1"; return 1 ;;
    esac
  done
  { [ -n "$dir" ] && [ -x "$shim" ] && [ -x "$agent" ]; } ||
    { _e2e_err "e2e_setup --dir DIR --shim PATH --agent PATH (shim=$shim agent=$agent)"; return 1; }
  local tool
  for tool in containerd ctr qemu-system-x86_64 umoci skopeo; do
    command -v "$tool" >/dev/null || { _e2e_err "$tool is not installed"; return 1; }
  done
  mkdir -p "$dir/bin" || return 1
  E2E_DIR=$(cd "$dir" && pwd)
  ln -sfn "$(readlink -f "$shim")" "$E2E_DIR/bin/containerd-shim-kata-v2"

  local assets=${KATA_TEST_GUEST_DIR:-${KATA_CACHE_DIR:-/var/cache/kata-cpp}/e2e-assets} out
  out=$("$_e2e_repo/tools/osbuilder/build-guest-assets.sh" --agent "$agent" --out-dir "$assets" \
    --debug-console) || { _e2e_err "build-guest-assets.sh failed"; return 1; }
  E2E_KERNEL=$(sed -n 's/^kernel=//p' <<<"$out")
  E2E_INITRD=$(sed -n 's/^initrd=//p' <<<"$out")
  E2E_KERNEL_DIR=$(sed -n 's/^kernel_dir=//p' <<<"$out")
  E2E_GUEST_RELEASE=$(sed -n 's/^release=//p' <<<"$out")
  { [ -n "$E2E_KERNEL" ] && [ -n "$E2E_INITRD" ]; } ||
    { _e2e_err "build-guest-assets.sh printed no kernel/initrd: $out"; return 1; }
  E2E_KATA_CONFIG=$E2E_DIR/configuration-qemu.toml
  e2e_write_kata_config "$E2E_KATA_CONFIG" "$E2E_KERNEL" "$E2E_INITRD"

  E2E_CTR_ADDRESS=$E2E_DIR/containerd.sock
  E2E_NAMESPACE=kata-e2e
  cat >"$E2E_DIR/containerd.toml" <<TOML
version = 2
root = "$E2E_DIR/root"
state = "$E2E_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$E2E_CTR_ADDRESS"
[ttrpc]
  address = "$E2E_CTR_ADDRESS.ttrpc"
TOML
  PATH="$E2E_DIR/bin:$PATH" setsid containerd --config "$E2E_DIR/containerd.toml" \
    >"$E2E_DIR/containerd.log" 2>&1 </dev/null &
  E2E_CONTAINERD_PID=$!
  for _ in $(seq 100); do
    _e2e_ctr version >/dev/null 2>&1 && break
    sleep 0.2
  done
  _e2e_ctr version >/dev/null 2>&1 ||
    { _e2e_err "containerd did not come up: $(tail -5 "$E2E_DIR/containerd.log")"; return 1; }

  E2E_IMAGE=docker.io/kata-e2e/busybox:latest
  (
    set -e
    cd "$E2E_DIR"
    "$_e2e_repo/tests/fixtures/make-busybox-rootfs.sh" rootfs-src >/dev/null 2>&1
    umoci init --layout oci
    umoci new --image oci:bb
    umoci unpack --rootless --image oci:bb bundle >/dev/null
    cp -a rootfs-src/. bundle/rootfs/
    umoci repack --image oci:bb bundle
    umoci config --image oci:bb --config.cmd /bin/sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
    skopeo copy oci:oci:bb docker-archive:bb.tar:kata-e2e/busybox:latest >/dev/null
    rm -rf bundle rootfs-src
  ) || { _e2e_err "building the busybox image failed"; return 1; }
  _e2e_ctr images import "$E2E_DIR/bb.tar" >/dev/null ||
    { _e2e_err "ctr images import failed"; return 1; }
  export E2E_DIR E2E_CTR_ADDRESS E2E_NAMESPACE E2E_IMAGE E2E_KATA_CONFIG E2E_KERNEL E2E_INITRD \
    E2E_KERNEL_DIR E2E_GUEST_RELEASE E2E_CONTAINERD_PID
}

e2e_teardown() {
  local id
  if [ -n "${E2E_CTR_ADDRESS:-}" ] && [ -S "$E2E_CTR_ADDRESS" ]; then
    for id in $(_e2e_ctr task ls -q 2>/dev/null); do
      _e2e_ctr task kill -s SIGKILL "$id" >/dev/null 2>&1
      for _ in $(seq 25); do _e2e_ctr task delete "$id" >/dev/null 2>&1 && break; sleep 0.2; done
    done
    for id in $(_e2e_ctr container ls -q 2>/dev/null); do
      _e2e_ctr container delete "$id" >/dev/null 2>&1
    done
  fi
  if [ -n "${E2E_CONTAINERD_PID:-}" ] && kill -0 "$E2E_CONTAINERD_PID" 2>/dev/null; then
    kill -TERM "$E2E_CONTAINERD_PID"
    for _ in $(seq 50); do kill -0 "$E2E_CONTAINERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$E2E_CONTAINERD_PID" 2>/dev/null
    wait "$E2E_CONTAINERD_PID" 2>/dev/null
  fi
  E2E_CONTAINERD_PID=""
  # runc (the baseline in bench/ctr) puts containers under /<namespace>/<id> in every cgroup
  # hierarchy and leaves the empty /<namespace> parents behind.
  if [ -n "${E2E_NAMESPACE:-}" ]; then
    for cg in /sys/fs/cgroup/"$E2E_NAMESPACE" /sys/fs/cgroup/*/"$E2E_NAMESPACE"; do
      [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
    done
  fi
  if [ -n "${E2E_DIR:-}" ]; then
    awk -v d="$E2E_DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
      sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null; done
  fi
  return 0
}
