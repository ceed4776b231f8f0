#!/usr/bin/env bash
# Unpacks the builds carried xz-compressed under build/xfer (the device tool's carry limit is
# 64 MiB, and the two binaries are ~19 MB each): nanovllm.xz -> build/tools/nanovllm,
# gpu_tests.xz -> build/tests/gpu_tests, and any other NAME.xz -> build/tools/NAME. Run from the
# repository root; missing archives are skipped.
set -uo pipefail
for a in build/xfer/*.xz; do
  [ -f "$a" ] || continue
  f=$(basename "$a" .xz)
  case $f in gpu_tests*) dst=build/tests/$f ;; *) dst=build/tools/$f ;; esac
  mkdir -p "$(dirname "$dst")" && xz -dc "$a" >"$dst" && chmod +x "$dst"
done
