#!/usr/bin/env bash
# Every test, from a fresh machine: install, then
#   1. the release build (with the CUDA backend compiled when nvcc is found) and all tests;
#      GPU tests report themselves SKIPPED where there is no GPU;
#   2. the unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. a short run of each libFuzzer target over its seed corpus (the long runs are in
#      docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== release build and tests"
scripts/build.sh release
(cd build && ctest --output-on-failure -j "$(nproc)")

echo "== AddressSanitizer + UBSan build and tests"
scripts/build.sh asan
(cd build-asan && ctest --output-on-failure -j "$(nproc)")

echo "== fuzz smoke: each target for ${FUZZ_SECONDS:-20}s"
scripts/build.sh fuzz
# (Gemma 3's 33 MB tokenizer takes most of a short run to load under ASan: left to long runs.)
NANOVLLM_FUZZ_GEMMA=0 scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
echo "== all tests passed"
