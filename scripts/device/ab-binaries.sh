#!/usr/bin/env bash
# A/B of two builds of the nanovllm command on batch-1 decode and bench.py, alternating runs so
# drift in the card's clocks hits both alike. Builds carried xz-compressed under build/xfer:
# nanovllm-old.xz (A) and nanovllm.xz (B). Usage: MODELS="qwen3-0.6b qwen3-8b" ROUNDS=2 \
# THROUGHPUT=1 scripts/device/ab-binaries.sh. One build with two settings: A_BIN=build/tools/nanovllm
# A_ARGS="--async-scheduling off" B_ARGS="--async-scheduling on". PROFILE=1 adds one run of each
# side with NANOVLLM_PROFILE_OPS=$PROFILE_OPS (default 1; "steps": step events only, no waiting)
# (bench.py, then 0.6B batch 1) and prints the GPU idle share.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ab-bin}
mkdir -p "$OUT"
scripts/device/unpack-build.sh  # nanovllm-old.xz -> build/tools/nanovllm-old, nanovllm.xz -> build/tools/nanovllm
declare -A BIN=([A]=${A_BIN:-build/tools/nanovllm-old} [B]=${B_BIN:-build/tools/nanovllm})
declare -A ARGS=([A]=${A_ARGS:-} [B]=${B_ARGS:-})
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); A: ${BIN[A]} ${ARGS[A]}; B: ${BIN[B]} ${ARGS[B]}"
for m in ${MODELS:-qwen3-0.6b qwen3-8b}; do
  for r in $(seq "${ROUNDS:-2}"); do
    for side in A B; do
      # shellcheck disable=SC2086  # ARGS is a list of words
      timeout 200 ${BIN[$side]} bench latency -m "$m" "${D[@]}" ${ARGS[$side]} --input-len 512 --output-len 128 \
        --num-iters 3 --max-num-seqs 1 >"$OUT/lat-$m-$side-$r.log" 2>&1
      echo "$m $side round $r (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m-$side-$r.log" | tr '\n' ' ')"
    done
  done
done
if [ "${THROUGHPUT:-1}" = 1 ]; then
  for r in $(seq "${TP_ROUNDS:-1}"); do
    for side in A B; do
      # shellcheck disable=SC2086
      timeout 200 ${BIN[$side]} bench throughput -m qwen3-0.6b "${D[@]}" ${ARGS[$side]} >"$OUT/tp-$side-$r.log" 2>&1
      echo "bench.py $side round $r (exit $?): $(grep -E '^Total' "$OUT/tp-$side-$r.log")"
    done
  done
fi
if [ "${PROFILE:-0}" = 1 ]; then
  for side in A B; do
    # shellcheck disable=SC2086
    NANOVLLM_PROFILE_OPS=${PROFILE_OPS:-1} timeout 200 ${BIN[$side]} bench throughput -m qwen3-0.6b "${D[@]}" ${ARGS[$side]} \
      >"$OUT/prof-tp-$side.log" 2>&1
    echo "profiled bench.py $side (exit $?): $(grep -E '^Total' "$OUT/prof-tp-$side.log")"
    grep -iE 'idle|decode steps|sample' "$OUT/prof-tp-$side.log" | head -8
    # shellcheck disable=SC2086
    NANOVLLM_PROFILE_OPS=${PROFILE_OPS:-1} timeout 200 ${BIN[$side]} bench latency -m qwen3-0.6b "${D[@]}" ${ARGS[$side]} \
      --input-len 512 --output-len 128 --num-iters 3 --max-num-seqs 1 >"$OUT/prof-lat-$side.log" 2>&1
    echo "profiled 0.6B batch 1 $side (exit $?): $(grep -o '[0-9.]* ms per output token' "$OUT/prof-lat-$side.log")"
    grep -iE 'idle|decode steps|sample' "$OUT/prof-lat-$side.log" | head -8
  done
fi
