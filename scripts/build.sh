#!/usr/bin/env bash
# Configures and builds one flavour of nanovllm. Usage: scripts/build.sh [release|asan|fuzz]
# Build folders: build/ (release, CUDA when nvcc is found), build-asan/, build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
jobs=$(nproc)
case "$flavour" in
  release) dir=build; args=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan)    dir=build-asan; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOVLLM_SANITIZE=ON) ;;
  fuzz)    dir=build-fuzz; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOVLLM_FUZZ=ON -DNANOVLLM_TESTS=OFF
                                 -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "usage: $0 [release|asan|fuzz]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
# The Python module: `import nanovllm` in /usr/bin/python3 (a .pth file; scripts/install-python.sh).
if [ "$flavour" = release ]; then scripts/install-python.sh "$dir"; fi
