#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, and run a forward pass of a fixture model
# (random weights, made with transformers) that prints its next-token prediction, then generate
# a continuation with the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
model=${MODEL:-tests/fixtures/models/qwen3-tied-bf16-g4-d64}
./build/tools/nanovllm inspect --model "$model"
echo
./build/tools/nanovllm predict --model "$model" --tokens "${TOKENS:-1,17,42,99,256,7}"
echo
# The engine: greedy continuation of the same prompt, 16 tokens.
./build/tools/nanovllm generate --model "$model" --tokens "${TOKENS:-1,17,42,99,256,7}" --max-tokens 16 --temperature 0
