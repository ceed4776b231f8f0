#!/usr/bin/env bash
# A/B of two builds on prefill: the prefill-attention correctness tests on the new build, the
# attention kernel timings and the Qwen3-8B 8 x 4,096 prefill bench, old and new alternating
# (so drift in the card's clocks hits both alike), torch's FlashAttention-2 in the same call,
# and optionally (NCU=1) Nsight Compute's per-instruction warp stall samples for the new
# build's wgmma kernel in an 8B prefill. Builds carried xz-compressed under build/xfer:
# gpu_tests-old.xz / nanovllm-old.xz (A), gpu_tests.xz / nanovllm.xz (B) and optionally
# gpu_tests-c.xz / nanovllm-c.xz (C, with SIDES="A B C").
# Usage: ROUNDS=2 NCU=1 scripts/device/prefill-ab.sh (TESTS=0, PREFILL=0, SDPA=0 skip those parts;
# NCU_SIDES="B" profiles one build only)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/prefill-ab}
mkdir -p "$OUT"
scripts/device/unpack-build.sh
declare -A BIN=([A]=build/tools/nanovllm-old [B]=build/tools/nanovllm [C]=build/tools/nanovllm-c)
declare -A TST=([A]=build/tests/gpu_tests-old [B]=build/tests/gpu_tests [C]=build/tests/gpu_tests-c)
SIDES=${SIDES:-A B}
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); A: old build, B: new build; sides: $SIDES"

if [ "${TESTS:-1}" = 1 ]; then
  for side in $SIDES; do
    [ "$side" = A ] && continue
    timeout 300 ${TST[$side]} --gtest_filter='CudaAttentionPrefill*:CudaAttentionGraph*' >"$OUT/tests-$side.log" 2>&1
    echo "== prefill attention tests, build $side (exit $?)"
    grep -E '^\[  (PASSED|FAILED) |FAILED|wgmma kernel' "$OUT/tests-$side.log" | head -20
  done
fi

D=(--load-format dummy --backend cuda --matmul-tflops 920 --bandwidth-gbs 4250)
for r in $(seq "${ROUNDS:-2}"); do
  for side in $SIDES; do
    timeout 120 ${TST[$side]} --gtest_filter='CudaAttentionPerf.PrefillTiming' >"$OUT/timing-$side-$r.log" 2>&1
    echo "attention timing $side round $r (exit $?):"
    grep -E 'timing' "$OUT/timing-$side-$r.log" | sed 's/^/  /'
    [ "${PREFILL:-1}" = 1 ] || continue
    timeout 200 ${BIN[$side]} bench prefill -m qwen3-8b "${D[@]}" --num-prompts 8 --input-len 4096 \
      --max-model-len 8192 >"$OUT/prefill-$side-$r.log" 2>&1
    echo "8B prefill 8x4096 $side round $r (exit $?): $(grep -vE '^\[' "$OUT/prefill-$side-$r.log" | tail -2 | tr '\n' ' ')"
  done
done
# SASS=1: the wgmma kernel's instruction counts per opcode, per build.
if [ "${SASS:-0}" = 1 ]; then
  for side in $SIDES; do
    echo "SASS opcodes, build $side: $(cuobjdump -sass "${TST[$side]}" 2>/dev/null |
      awk '/Function : .*prefill_wgmma_kernel/{f=1; next} /Function : /{f=0} f && /\/\*[0-9a-f]+\*\//{
        for (i = 1; i <= NF; i++) if ($i ~ /^[A-Z][A-Z0-9]+(\.|$)/) { split($i, a, "."); n[a[1]]++; break } }
        END { for (k in n) printf "%s %d\n", k, n[k] }' | sort -k2 -nr | head -16 | tr '\n' ' ')"
  done
fi
[ "${SDPA:-1}" = 1 ] && python3 scripts/device/sdpa-bench.py 2>&1 | tail -6

# NCU=1: Nsight Compute on the 8 x 4,096 launch of PrefillTiming (its third case, after two of
# 3 + 30 launches each) for each build: the kernel's summary and its top stall locations.
if [ "${NCU:-0}" = 1 ]; then
  NCU_BIN=$(ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  NCU_BIN=${NCU_BIN:-ncu}
  for side in ${NCU_SIDES:-A B}; do
    timeout 240 "$NCU_BIN" --kernel-name regex:prefill_wgmma --launch-skip 70 --launch-count 1 \
      --section WarpStateStats --section SourceCounters --section SpeedOfLight --section ComputeWorkloadAnalysis \
      --section InstructionStats --clock-control none -o "$OUT/wgmma-$side" -f \
      ${TST[$side]} --gtest_filter='CudaAttentionPerf.PrefillTiming' >"$OUT/ncu-run-$side.log" 2>&1
    echo "== ncu $side (exit $?)"
    "$NCU_BIN" -i "$OUT/wgmma-$side.ncu-rep" --page details 2>&1 |
      grep -vE "^ *(-|$)|^==|Section:|Metric Name" | head -${NCU_DETAILS:-24}
    "$NCU_BIN" -i "$OUT/wgmma-$side.ncu-rep" --page source --csv --print-source sass >"$OUT/src-$side.csv" 2>&1
    python3 scripts/device/ncu-stalls.py "$OUT/src-$side.csv" "${NCU_TOP:-45}" 2>&1
    rm -f "$OUT/wgmma-$side.ncu-rep" "$OUT/src-$side.csv"
  done
fi
