#!/usr/bin/env bash
# A/B of two builds of the nanovllm command on batch-1 decode and bench.py, alternating runs so
# drift in the card's clocks hits both alike. Builds carried xz-compressed under build/xfer:
# nanovllm-old.xz (A) and nanovllm.xz (B). Usage: MODELS="qwen3-0.6b qwen3-8b" ROUNDS=2 \
# THROUGHPUT=1 scripts/device/ab-binaries.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ab-bin}
mkdir -p "$OUT"
scripts/device/unpack-build.sh  # nanovllm-old.xz -> build/tools/nanovllm-old, nanovllm.xz -> build/tools/nanovllm
declare -A BIN=([A]=build/tools/nanovllm-old [B]=build/tools/nanovllm)
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); A: old build, B: new build"
for m in ${MODELS:-qwen3-0.6b qwen3-8b}; do
  for r in $(seq "${ROUNDS:-2}"); do
    for side in A B; do
      timeout 200 ${BIN[$side]} bench latency -m "$m" "${D[@]}" --input-len 512 --output-len 128 --num-iters 3 \
        --max-num-seqs 1 >"$OUT/lat-$m-$side-$r.log" 2>&1
      echo "$m $side round $r (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m-$side-$r.log" | tr '\n' ' ')"
    done
  done
done
if [ "${THROUGHPUT:-1}" = 1 ]; then
  for r in $(seq "${TP_ROUNDS:-1}"); do
    for side in A B; do
      timeout 200 ${BIN[$side]} bench throughput -m qwen3-0.6b "${D[@]}" >"$OUT/tp-$side-$r.log" 2>&1
      echo "bench.py $side round $r (exit $?): $(grep -E '^Total' "$OUT/tp-$side-$r.log")"
    done
  done
fi
