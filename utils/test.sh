#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages, build) and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash utils/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2
cd build
ctest --output-on-failure -j1
