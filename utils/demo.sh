#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine as root: installs the packages, builds kata-cpp,
# installs it under PREFIX (default /opt/kata: binaries, guest kernel + initrd, configuration),
# starts a private containerd (own root, state and socket in a temp dir), imports a busybox image
# built locally, and runs a container in a VM with `ctr run --runtime io.containerd.kata.v2`.
# Usage: bash utils/demo.sh [COMMAND...]   (default: uname -a; cat /proc/version)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/kata}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (containerd, mounts and QEMU need it)" >&2; exit 1; }

say() { printf '\n==> %s\n' "$*" >&2; }

say "installing Debian packages"
bash utils/install-deps.sh

say "building kata-cpp"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX="$PREFIX" >/dev/null
cmake --build build -j2

say "installing into $PREFIX (binaries, guest kernel + initrd, configuration)"
cmake --install build --prefix "$PREFIX" >/dev/null
config=$PREFIX/share/defaults/kata-containers/configuration-qemu.toml
"$PREFIX/bin/kata-runtime" --config "$config" check || true

work=$(mktemp -d /tmp/kata-demo.XXXXXX)
containerd_pid=""
# shellcheck disable=SC2317  # run by the EXIT trap; the final `exit` misleads shellcheck (koalaman/shellcheck#2542)
cleanup() {
  set +e
  if [ -n "$containerd_pid" ]; then
    ctr_ task kill -s SIGKILL demo >/dev/null 2>&1
    ctr_ task delete demo >/dev/null 2>&1
    ctr_ container delete demo >/dev/null 2>&1
    kill "$containerd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$containerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$containerd_pid" 2>/dev/null
  fi
  # containerd's snapshot and shm mounts live under the work dir
  grep -o " ${work}[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ctr_() { ctr --address "$work/containerd.sock" --namespace kata-demo "$@"; }

say "starting a private containerd in $work"
cat >"$work/containerd.toml" <<EOT
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
EOT
PATH=$PREFIX/bin:$PATH containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null || { cat "$work/containerd.log" >&2; echo "demo: containerd did not start" >&2; exit 1; }

say "building and importing a busybox image"
tests/fixtures/make-busybox-image.sh "$work/busybox.tar" kata-cpp/busybox:latest
ctr_ images import "$work/busybox.tar" >/dev/null

# shellcheck disable=SC2016  # $(uname -a) is expanded by sh in the VM
if (($#)); then cmd=("$@"); else cmd=(sh -c 'echo "in the VM: $(uname -a)"; cat /proc/version'); fi
say "host kernel: $(uname -r)"
say "ctr run --runtime io.containerd.kata.v2 --rm docker.io/kata-cpp/busybox:latest demo ${cmd[*]}"
start=$(date +%s.%N)
rc=0
ctr_ run --runtime io.containerd.kata.v2 --runtime-config-path "$config" --rm \
  docker.io/kata-cpp/busybox:latest demo "${cmd[@]}" || rc=$?
end=$(date +%s.%N)
say "container exited with $rc after $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}') s"
exit $rc
