#!/usr/bin/env bash
# One device call for the small-batch GEMV (kernels/cuda/gemv.cu; build carried as in
# fusion-check.sh): the GPU tests in $FILTER, the GEMV timing table (CudaGemmPerf.GemvTiming:
# each k_split x unroll variant and the backend's pick, cold weights), compute-sanitizer memcheck
# over $SAN_FILTER, and batch-1 latency for $MODELS with the GEMM picks logged.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gemv-check}
mkdir -p "$OUT"
scripts/device/unpack-build.sh  # the builds carried compressed under build/xfer
T=build/tests/gpu_tests
N=build/tools/nanovllm
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
if [ "${FILTER:-x}" != none ]; then
  timeout 300 $T --gtest_filter="${FILTER:-Cuda*-*Perf*:CudaRealSize*}" >"$OUT/tests.log" 2>&1
  echo "tests (exit $?): $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/tests.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Za-z]|Failure|gemv' "$OUT/tests.log" | head -20
fi
timeout 200 $T --gtest_filter='CudaGemmPerf.GemvTiming' >"$OUT/gemv-timing.log" 2>&1
echo "gemv timing (exit $?):"
grep -E 'CudaGemmPerf' "$OUT/gemv-timing.log"
if [ "${SAN_FILTER:-x}" != none ]; then
  NANOVLLM_GPU_SANITIZER=1 timeout 240 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 99 $T \
    --gtest_filter="${SAN_FILTER:-CudaGemm.SmallBatch*:CudaGemm.Fused*}" >"$OUT/memcheck.log" 2>&1
  echo "memcheck (exit $?): $(grep -E 'SUMMARY' "$OUT/memcheck.log" | tail -1)"
fi
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
for m in ${MODELS:-qwen3-0.6b qwen3-8b}; do
  NANOVLLM_GEMM_LOG=1 timeout 200 $N bench latency -m $m "${D[@]}" --input-len 512 --output-len 128 --num-iters 3 \
    --max-num-seqs 1 >"$OUT/lat-$m.log" 2>&1
  echo "$m (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m.log" | tr '\n' ' ')"
  grep -E '^\[gemm\] M=1 .*timed' "$OUT/lat-$m.log" | sed -E 's/\[gemm\] //'
done
