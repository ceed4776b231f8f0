#!/usr/bin/env bash
# On the GPU machine: save a random-weight Qwen3-0.6B (bf16, ~1.2 GB), measure the disk's own
# read speed, time our loader cold and warm, and check the real-size forward against
# transformers. Needs build/ carried (release build).
set -uo pipefail
export PYTHONUNBUFFERED=1
dir=/tmp/qwen3-0.6b-random
python3 tests/fixtures/make_fixtures.py --real-size "$dir" 2>&1 | grep -v "it/s"
ls -l "$dir"
f="$dir/model.safetensors"
sync
echo "== disk read speed (O_DIRECT, bypasses the page cache)"
dd if="$f" of=/dev/null bs=16M iflag=direct 2>&1 | tail -1
dd if="$f" of=/dev/null bs=16M iflag=direct 2>&1 | tail -1
echo "== page-cache read speed (warm)"
cat "$f" > /dev/null
dd if="$f" of=/dev/null bs=16M 2>&1 | tail -1
echo "== nanovllm load"
for i in 1 2; do ./build/tools/nanovllm load --model "$dir" --cold; done
for i in 1 2; do ./build/tools/nanovllm load --model "$dir"; done
echo "== real-size forward vs transformers"
python3 scripts/device/real-size-check.py "$dir" ./build/tools/nanovllm
