#!/usr/bin/env bash
# Where GPU time goes, per backend op (NANOVLLM_PROFILE_OPS=1), with every GEMM plan logged
# (NANOVLLM_GEMM_LOG=1), on the GPU machine (build carried as for fusion-check.sh):
#   1. Qwen3-8B prefill, 8 x 4096 (prefill steps are never graphed, so nothing is hidden);
#   2. batch-1 decode, eager (ops inside a replayed graph are not seen), Qwen3-8B and
#      Qwen3-0.6B, with the fused small-batch path off and on (NANOVLLM_FUSE_NORM_LINEAR).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/op-profile}
mkdir -p "$OUT"
scripts/device/unpack-build.sh  # the builds carried compressed under build/xfer
N=build/tools/nanovllm
D=(--load-format dummy --backend cuda)
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
NANOVLLM_GEMM_LOG=1 NANOVLLM_PROFILE_OPS=1 timeout 200 $N bench prefill -m qwen3-8b "${D[@]}" --num-prompts 8 \
  --input-len 4096 --max-model-len 8192 >"$OUT/prefill-8b.log" 2>&1
echo "== prefill 8B (exit $?): $(grep -E '^Prefill' "$OUT/prefill-8b.log")"
grep -E '^\[gemm\].*N=151936' "$OUT/prefill-8b.log" | head -8
grep '\[profile\]' "$OUT/prefill-8b.log" | head -40
for m in qwen3-8b qwen3-0.6b; do
  for fuse in 0 1; do
    NANOVLLM_FUSE_NORM_LINEAR=$fuse NANOVLLM_PROFILE_OPS=1 timeout 200 $N bench latency -m $m "${D[@]}" \
      --input-len 512 --output-len 64 --num-iters 1 --max-num-seqs 1 --enforce-eager >"$OUT/eager-$m-$fuse.log" 2>&1
    echo "== $m eager, fuse=$fuse (exit $?): $(grep -o '[0-9.]* ms per output token' "$OUT/eager-$m-$fuse.log")"
    grep '\[profile\]' "$OUT/eager-$m-$fuse.log" | sed -n '/decode steps/,/other steps/p' | head -16
  done
done
