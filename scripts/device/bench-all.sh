#!/usr/bin/env bash
# The benchmarks of docs/performance.md, in one call on the GPU machine (build carried:
# build/tools/nanovllm and build/tests/gpu_tests). Every result is printed with the card, and
# each bench measures its own ceilings (copy bandwidth, bf16 matmul rate) in the same call.
#   1. bench.py's workload on Qwen3-0.6B (dummy weights), with and without the op profiler
#      (the profiled run shows GPU time per op and the GPU's idle time between steps);
#   2. batch-1 latency, Qwen3-0.6B and Qwen3-8B (512 prompt + 128 output tokens);
#   3. prefill, Qwen3-8B, 8 prompts x 4096 tokens;
#   4. attention kernels (ours, from gpu_tests' timing cases) and torch's FlashAttention-2
#      (SDPA flash) on the same card.
# Logs and JSON go to $OUT (default /tmp/bench-all).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-all}
mkdir -p "$OUT"
B=build/tools/nanovllm
T=build/tests/gpu_tests
echo "card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
# The device's copy of the tree may carry a stale .git: pass COMMIT=<hash> to name the build.
echo "commit: ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown) (from the git of the copy, which may lag)}"
run() {
  local name=$1
  shift
  timeout 200 "$@" >"$OUT/$name.log" 2>&1
  echo "== $name (exit $?)"
  grep -vE '^\[(gemm|profile\]   )' "$OUT/$name.log" | tail -3
}
D=(--load-format dummy --backend cuda)
run throughput $B bench throughput -m qwen3-0.6b "${D[@]}" --json "$OUT/throughput.json"
NANOVLLM_PROFILE_OPS=1 run throughput-profiled $B bench throughput -m qwen3-0.6b "${D[@]}"
grep '\[profile\]' "$OUT/throughput-profiled.log" | head -8
run latency-0.6b $B bench latency -m qwen3-0.6b "${D[@]}" --input-len 512 --output-len 128 --json "$OUT/latency-0.6b.json"
run latency-8b $B bench latency -m qwen3-8b "${D[@]}" --input-len 512 --output-len 128 --num-iters 3 --json "$OUT/latency-8b.json"
run prefill-8b $B bench prefill -m qwen3-8b "${D[@]}" --num-prompts 8 --input-len 4096 --max-model-len 8192 --json "$OUT/prefill-8b.json"
timeout 120 $T --gtest_filter='CudaAttentionPerf*' >"$OUT/attention.log" 2>&1
echo "== attention kernels (exit $?)"
grep -E 'timing' "$OUT/attention.log"
python3 scripts/device/sdpa-bench.py 2>&1 | tee "$OUT/sdpa.log"
