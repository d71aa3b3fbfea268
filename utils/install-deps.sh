#!/usr/bin/env bash
# Installs every Debian package kata-cpp needs to build, test and run (idempotent).
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git clang-format
  protobuf-compiler libprotobuf-dev
  libtomlplusplus-dev nlohmann-json3-dev libcli11-dev
  libseccomp-dev libcap-dev libarchive-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev
  lld  # kata-agent's link packs its start-up code (src/agent/service/cmake/startup-order.txt)
  shellcheck  # the lint.shellcheck test (tools/lint/check-shell.sh)
  # clang: the sanitizer + -Werror tree and the fuzzers (check.sanitize*, fuzz.*); clang-tidy
  clang clang-tidy
  # guest assets
  qemu-system-x86 busybox-static cpio xz-utils zstd e2fsprogs kmod erofs-utils
  # optional minimal guest kernel (tools/packaging/kernel/build-kernel.sh)
  flex bison bc libelf-dev
  # real peers used by tests and the main job
  containerd runc skopeo umoci iproute2 tmux procps psmisc
  # CRI tests: CNI plugins (portmap needs iptables), our CRI client (python3-grpcio)
  containernetworking-plugins iptables python3-grpcio python3-protobuf
  # a local registry (image pull and kata-deploy payload tests), htpasswd, a test CA, manifests
  docker-registry apache2-utils openssl python3-yaml
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all packages present" >&2
