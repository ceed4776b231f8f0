#!/usr/bin/env bash
# One device call after a kernel change (build carried: build/tools/nanovllm, build/tests/gpu_tests):
# the GPU tests in $FILTER, the decode attention timings with PDL off and on, compute-sanitizer
# memcheck and racecheck over $SAN_FILTER, batch-1 latency (with the GEMM picks logged) and bench.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/quick}
mkdir -p "$OUT"
B=build/tests/gpu_tests
N=build/tools/nanovllm
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
$B --gtest_filter="${FILTER:-Cuda*-*Perf*:CudaRealSize*}" >"$OUT/tests.log" 2>&1
echo "tests (exit $?): $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \] [A-Za-z]|Failure' "$OUT/tests.log" | head -10
for pdl in 0 1; do
  NANOVLLM_PDL=$pdl $B --gtest_filter='CudaAttentionPerf.DecodeTiming' 2>&1 | grep 'timing decode' |
    sed -E "s/^\[ CudaAttention \] timing decode +/PDL=$pdl /; s/16\/8 heads, d=128, bs=256, //"
done
S=/usr/local/cuda/bin/compute-sanitizer
for tool in memcheck racecheck; do
  NANOVLLM_GPU_SANITIZER=1 $S --tool $tool --error-exitcode 99 $B --gtest_filter="${SAN_FILTER:-CudaGemm.SmallBatch*}" \
    >"$OUT/$tool.log" 2>&1
  echo "$tool (exit $?): $(grep -E 'SUMMARY' "$OUT/$tool.log" | tail -1)"
done
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
for m in qwen3-0.6b qwen3-8b; do
  NANOVLLM_GEMM_LOG=1 timeout 200 $N bench latency -m $m "${D[@]}" --input-len 512 --output-len 128 --num-iters 3 \
    --max-num-seqs 1 >"$OUT/lat-$m.log" 2>&1
  echo "$m (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m.log" | tr '\n' ' ')"
  grep -E '^\[gemm\] M=1 .*timed' "$OUT/lat-$m.log" | sed -E 's/\[gemm\] //'
done
timeout 200 $N bench throughput -m qwen3-0.6b "${D[@]}" >"$OUT/tp.log" 2>&1
echo "bench.py (exit $?): $(grep -E '^Total' "$OUT/tp.log")"
