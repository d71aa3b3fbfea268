#!/usr/bin/env bash
# The README's test command: sets up a fresh Debian 12 machine (packages, build, guest kernel)
# and runs every test through ctest. Run as root (tests create namespaces, mounts, cgroups,
# and VMs under QEMU). KATA_GUEST_KERNEL=debian tests with Debian's kernel instead of ours.
set -euo pipefail
cd "$(dirname "$0")/.."
bash utils/install-deps.sh
# Warnings are errors here; the ctest run below also builds a clang tree with -Werror and
# address,undefined sanitizers (check.sanitize-build), runs the VM-free tests in it
# (check.sanitize) and each fuzzer for KATA_FUZZ_SECONDS (fuzz.*), and lints (lint.*).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKATA_WERROR=ON >/dev/null
cmake --build build -j2
# The guest kernel is built (minimal, ~9 min on 2 cores) or fetched (Debian's) once and cached
# in ${KATA_CACHE_DIR:-/var/cache/kata-cpp}; doing it here keeps it out of any test's timeout.
kernel=$(sed -n 's/^KATA_GUEST_KERNEL:STRING=//p' build/CMakeCache.txt)
case $kernel in
  minimal) tools/packaging/kernel/build-kernel.sh >/dev/null ;;
  *) tools/packaging/kernel/fetch-debian-kernel.sh >/dev/null ;;
esac
cd build
ctest --output-on-failure -j1
