#!/usr/bin/env bash
# A/B of an environment switch on batch-1 decode and bench.py, on the GPU machine (build
# carried: build/tools/nanovllm). Runs alternate A and B so drift in the card's clocks hits
# both alike. Usage: VAR=NANOVLLM_PDL A=0 B=1 ROUNDS=2 scripts/device/ab-latency.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ab}
mkdir -p "$OUT"
BIN=build/tools/nanovllm
VAR=${VAR:-NANOVLLM_PDL}
ROUNDS=${ROUNDS:-2}
MODELS=${MODELS:-"qwen3-0.6b qwen3-8b"}
D=(--load-format dummy --backend cuda --bandwidth-gbs 4250 --matmul-tflops 920)
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $VAR: A=${A:-0} B=${B:-1}"
for m in $MODELS; do
  for r in $(seq "$ROUNDS"); do
    for side in A B; do
      val=${!side:-}
      [ -z "$val" ] && val=$([ $side = A ] && echo 0 || echo 1)
      env "$VAR=$val" timeout 200 $BIN bench latency -m "$m" "${D[@]}" --input-len 512 --output-len 128 \
        --num-iters 3 --max-num-seqs 1 >"$OUT/lat-$m-$side-$r.log" 2>&1
      echo "$m $side($val) round $r (exit $?): $(grep -o 'TTFT [0-9.]* ms\|[0-9.]* ms per output token' "$OUT/lat-$m-$side-$r.log" | tr '\n' ' ')"
    done
  done
done
if [ "${THROUGHPUT:-1}" = 1 ]; then
  for side in A B; do
    val=${!side:-}
    [ -z "$val" ] && val=$([ $side = A ] && echo 0 || echo 1)
    env "$VAR=$val" timeout 200 $BIN bench throughput -m qwen3-0.6b "${D[@]}" >"$OUT/tp-$side.log" 2>&1
    echo "bench.py $side($val) (exit $?): $(grep -E '^Total' "$OUT/tp-$side.log")"
  done
fi
