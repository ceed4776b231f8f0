#!/usr/bin/env bash
# Runs every libFuzzer target for N seconds (default 300) from its seed corpus in fuzz/corpus/.
# Usage: scripts/fuzz.sh [seconds]; build first with scripts/build.sh fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
for bin in build-fuzz/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds=fuzz/corpus/${name#fuzz_}
  work=build-fuzz/corpus-${name#fuzz_}
  log=build-fuzz/$name.log
  mkdir -p "$work"
  [ -d "$seeds" ] || seeds=""
  echo "fuzz: $name for ${seconds}s"
  # libFuzzer exits non-zero and writes the input to crash-* when it finds a crash or a leak.
  if ! "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix=build-fuzz/ "$work" $seeds >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $name FAILED (log: $log)" >&2
    exit 1
  fi
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
done
