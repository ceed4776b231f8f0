#!/usr/bin/env bash
# One device call for the fused small-batch decode path (gemv.cu's fused variants; build carried:
# build/tools/nanovllm, build/tests/gpu_tests, xz-compressed under build/xfer if present):
#   1. the GPU tests in $FILTER (all but the timing and real-size ones by default);
#   2. the elementwise kernel timings (CudaKernelsPerf.ElementwiseTiming);
#   3. compute-sanitizer memcheck and racecheck over $SAN_FILTER;
#   4. NANOVLLM_FUSE_NORM_LINEAR off / on, alternating: batch-1 latency (0.6B and 8B, twice each)
#      and bench.py;
#   5. Qwen3-8B prefill, 8 x 4096, twice (for GPU time per op: scripts/device/op-profile.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fusion-check}
mkdir -p "$OUT"
scripts/device/unpack-build.sh  # the builds carried compressed under build/xfer
T=build/tests/gpu_tests
N=build/tools/nanovllm
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
timeout 300 $T --gtest_filter="${FILTER:-Cuda*-*Perf*:CudaRealSize*}" >"$OUT/tests.log" 2>&1
echo "tests (exit $?): $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \] [A-Za-z]|Failure|fused gemv|greedy tokens equal|invariance' "$OUT/tests.log" | head -20
timeout 120 $T --gtest_filter='CudaKernelsPerf.ElementwiseTiming' 2>&1 | grep timing
S=/usr/local/cuda/bin/compute-sanitizer
for tool in memcheck racecheck; do
  NANOVLLM_GPU_SANITIZER=1 timeout 200 $S --tool $tool --error-exitcode 99 $T \
    --gtest_filter="${SAN_FILTER:-CudaGemm.Fused*:CudaKernels.SiluAndMul}" >"$OUT/$tool.log" 2>&1
  echo "$tool (exit $?): $(grep -E 'SUMMARY' "$OUT/$tool.log" | tail -1)"
done
export VAR=NANOVLLM_FUSE_NORM_LINEAR A=0 B=1
OUT=$OUT/ab MODELS=qwen3-0.6b ROUNDS=2 THROUGHPUT=1 timeout 400 scripts/device/ab-latency.sh
OUT=$OUT/ab MODELS=qwen3-8b ROUNDS=${ROUNDS_8B:-2} THROUGHPUT=0 timeout 200 scripts/device/ab-latency.sh | grep -v '^card'
D=(--load-format dummy --backend cuda)
P=(bench prefill -m qwen3-8b "${D[@]}" --num-prompts 8 --input-len 4096 --max-model-len 8192)
for r in 1 2; do
  timeout 200 $N "${P[@]}" >"$OUT/prefill-8b-$r.log" 2>&1
  echo "prefill 8B (exit $?): $(grep -vE '^\[' "$OUT/prefill-8b-$r.log" | tail -2 | tr '\n' ' ')"
done
