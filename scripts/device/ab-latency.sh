#!/usr/bin/env bash
# A/B of an environment switch on batch-1 decode and bench.py, on the GPU machine (build
# carried: build/tools/nanovllm). Runs alternate A and B so drift in the card's clocks hits
# both alike. Usage: VAR=NANOVLLM_PDL A=0 B=1 ROUNDS=2 scripts/device/ab-latency.sh
# More sides, each a list of assignments: SIDES="A B C" A="X=0 Y=4" B="X=1 Y=4" C="X=1 Y=16".
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ab}
mkdir -p "$OUT"
BIN=build/tools/nanovllm
VAR=${VAR:-NANOVLLM_PDL}
ROUNDS=${ROUNDS:-2}
MODELS=${MODELS:-"qwen3-0.6b qwen3-8b"}
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
SIDES=${SIDES:-A B}
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $VAR: A=${A:-0} B=${B:-1}"
# The environment of one side: its value, as VAR's value or (containing '=') as assignments.
side_env() {
  local side=$1 val=${!1:-}
  [ -z "$val" ] && val=$([ "$side" = A ] && echo 0 || echo 1)
  case $val in *=*) echo "$val" ;; *) echo "$VAR=$val" ;; esac
}
for m in $MODELS; do
  for r in $(seq "$ROUNDS"); do
    for side in $SIDES; do
      val=$(side_env $side)
      env $val timeout 200 $BIN bench latency -m "$m" "${D[@]}" --input-len 512 --output-len 128 \
        --num-iters 3 --max-num-seqs 1 >"$OUT/lat-$m-$side-$r.log" 2>&1
      echo "$m $side($val) round $r (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m-$side-$r.log" | tr '\n' ' ')"
    done
  done
done
if [ "${THROUGHPUT:-1}" = 1 ]; then
  for side in $SIDES; do
    val=$(side_env $side)
    env $val timeout 200 $BIN bench throughput -m qwen3-0.6b "${D[@]}" >"$OUT/tp-$side.log" 2>&1
    echo "bench.py $side($val) (exit $?): $(grep -E '^Total' "$OUT/tp-$side.log")"
  done
fi
