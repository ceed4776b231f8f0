#!/usr/bin/env bash
# Nsight Compute on one launch of one kernel inside gpu_tests (build carried, see
# unpack-build.sh): its speed-of-light and warp-state summary, then the SASS lines with the
# most warp stall samples (ncu-stalls.py). Usage:
#   KERNEL=regex:decode_split_kernel SKIP=490 FILTER='CudaAttentionPerf.DecodeTiming' \
#   scripts/device/kernel-stalls.sh
# SKIP counts earlier launches of kernels matching KERNEL (read the test to count them).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kernel-stalls}
mkdir -p "$OUT"
scripts/device/unpack-build.sh
NCU_BIN=$(ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
NCU_BIN=${NCU_BIN:-ncu}
timeout 240 "$NCU_BIN" --kernel-name "$KERNEL" --launch-skip "${SKIP:-0}" --launch-count 1 \
  --warp-sampling-interval "${INTERVAL:-0}" --section WarpStateStats --section SourceCounters \
  --section SpeedOfLight --section LaunchStats --clock-control none -o "$OUT/k" -f \
  build/tests/gpu_tests --gtest_filter="$FILTER" >"$OUT/ncu-run.log" 2>&1
echo "== ncu (exit $?)"
"$NCU_BIN" -i "$OUT/k.ncu-rep" --page details 2>&1 |
  grep -E 'gpu_tests|\(.*\)x\(|Duration|Elapsed Cycles|Issue Slots Busy|Warp Cycles Per Issued|Grid Size|Registers Per|Achieved Occ|Avg. Active Threads' | head -"${DETAILS:-14}"
"$NCU_BIN" -i "$OUT/k.ncu-rep" --page source --csv --print-source sass >"$OUT/src.csv" 2>&1
python3 scripts/device/ncu-stalls.py "$OUT/src.csv" "${TOP:-40}" 2>&1 | grep -v '^columns:'
cuobjdump -sass build/tests/gpu_tests 2>/dev/null | awk -v pat="${SASS_FUNCTION:-decode_split_kernel}" \
  '/Function : /{f = index($0, pat) > 0} f' | xz -T0 -6 >"$OUT/sass.txt.xz"
rm -f "$OUT/k.ncu-rep"
