#!/usr/bin/env bash
# Where a batch-1 decode step's time goes, on the GPU machine (build carried: build/tools/nanovllm).
# For each model: the step's time per output token (bench latency), then Nsight Compute over one
# decode step (NANOVLLM_PROFILE_DECODE_STEP brackets it with cudaProfilerStart/Stop):
#   node mode:  every kernel of the replayed graph timed alone (gpu__time_duration);
#   graph mode: the whole graph as one result.
# The difference between the graph's time and the sum of its kernels is what the kernel
# boundaries cost. Tables via scripts/device/ncu-summary.py; raw CSV under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/decode-anatomy}
mkdir -p "$OUT"
B=build/tools/nanovllm
NCU=${NCU:-/opt/nvidia/nsight-compute/2025.3.1/ncu}
MODELS=${MODELS:-"qwen3-0.6b qwen3-8b"}
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
for m in $MODELS; do
  A=(bench latency -m "$m" --load-format dummy --backend cuda --input-len 512 --max-num-seqs 1
     --bandwidth-gbs 4250 --matmul-tflops 920)
  timeout 200 $B "${A[@]}" --output-len 128 --num-iters 3 >"$OUT/latency-$m.log" 2>&1
  echo "== $m latency (exit $?): $(grep -i 'per output token\|ms/token\|TTFT' "$OUT/latency-$m.log" | tail -2)"
  for mode in node graph; do
    NANOVLLM_PROFILE_DECODE_STEP=40 timeout 300 $NCU --profile-from-start off --clock-control none \
      --graph-profiling $mode --metrics gpu__time_duration.sum --csv --log-file "$OUT/ncu-$m-$mode.csv" \
      $B "${A[@]}" --output-len 64 --num-iters 1 --num-warmup-iters 1 >"$OUT/ncu-$m-$mode.log" 2>&1
    echo "== $m ncu $mode (exit $?)"
  done
  python3 scripts/device/ncu-summary.py "$OUT/ncu-$m-node.csv" "$OUT/ncu-$m-graph.csv" | tee "$OUT/summary-$m.txt"
done
