#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, and run a forward pass of a fixture model
# (random weights, made with transformers) that prints its next-token prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
model=${MODEL:-tests/fixtures/models/qwen3-tied-bf16-g4-d64}
./build/tools/nanovllm inspect --model "$model"
echo
./build/tools/nanovllm predict --model "$model" --tokens "${TOKENS:-1,17,42,99,256,7}"
