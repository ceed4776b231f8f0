#!/usr/bin/env bash
# Verification of a new build in one device call (build carried xz-compressed under build/xfer,
# see unpack-build.sh; a plain build/tools/nanovllm and build/tests/gpu_tests work too): the GPU
# tests in $FILTER (default: all but timings and real-size models), compute-sanitizer $SAN_TOOLS
# over $SAN_FILTER, bench.py's workload and batch-1 latency for $MODELS. Options:
#   DECODE_TIMINGS=1  the decode attention timings with PDL off and on;
#   GEMM_LOG=1        the latency runs log the M = 1 GEMM picks;
#   THROUGHPUT=0      skips bench.py.
# Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/verify}
mkdir -p "$OUT"
scripts/device/unpack-build.sh
T=build/tests/gpu_tests
N=build/tools/nanovllm
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
timeout "${TEST_TIMEOUT:-300}" $T --gtest_filter="${FILTER:-Cuda*:*/Cuda*-*Perf*:CudaRealSize*}" >"$OUT/tests.log" 2>&1
echo "tests (exit $?): $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \] [A-Za-z]|Failure|greedy|transformers' "$OUT/tests.log" | head -12
if [ "${DECODE_TIMINGS:-0}" = 1 ]; then
  for pdl in 0 1; do
    NANOVLLM_PDL=$pdl timeout 120 $T --gtest_filter='CudaAttentionPerf.DecodeTiming' 2>&1 | grep 'timing decode' |
      sed -E "s/^\[ CudaAttention \] timing decode +/PDL=$pdl /; s/16\/8 heads, d=128, bs=256, //"
  done
fi
S=/usr/local/cuda/bin/compute-sanitizer
for tool in ${SAN_TOOLS:-memcheck racecheck}; do
  NANOVLLM_GPU_SANITIZER=1 timeout "${SAN_TIMEOUT:-150}" $S --tool $tool --error-exitcode 99 $T \
    --gtest_filter="${SAN_FILTER:-CudaAttentionPrefill.*:CudaAttentionDecode.*}" >"$OUT/$tool.log" 2>&1
  echo "$tool (exit $?): $(grep -E 'SUMMARY' "$OUT/$tool.log" | tail -1) $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/$tool.log" | tr '\n' ' ')"
done
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
if [ "${THROUGHPUT:-1}" = 1 ]; then
  timeout 200 $N bench throughput -m qwen3-0.6b "${D[@]}" >"$OUT/tp.log" 2>&1
  echo "bench.py (exit $?): $(grep -E '^Total' "$OUT/tp.log")"
fi
for m in ${MODELS:-qwen3-0.6b qwen3-8b}; do
  NANOVLLM_GEMM_LOG=${GEMM_LOG:-0} timeout 200 $N bench latency -m $m "${D[@]}" --input-len 512 --output-len 128 \
    --num-iters 3 --max-num-seqs 1 >"$OUT/lat-$m.log" 2>&1
  echo "$m (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m.log" | tr '\n' ' ')"
  [ "${GEMM_LOG:-0}" = 1 ] && grep -E '^\[gemm\] M=1 .*timed' "$OUT/lat-$m.log" | sed -E 's/\[gemm\] //'
done
exit 0
