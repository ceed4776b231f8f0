#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, then complete Python code with the
# built-in model (models/nanovllm-tiny: a 7M-parameter Qwen3 with its own tokenizer, trained by
# scripts/device/train-builtin-model.py on Python's own source). No GPU, no download: the
# engine runs on the CPU backend here, or on CUDA where there is a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
nv=./build/tools/nanovllm
$nv inspect
echo
for prompt in "def fibonacci(n):" "import os" "class Stack:"; do
  echo "== $prompt"
  printf '%s' "$prompt"
  $nv generate --max-tokens 48 --temperature 0 "$prompt"
  echo
done
echo "== sampled (temperature 0.8, top-p 0.95, seed 1)"
printf 'def read_json(path):'
$nv generate --max-tokens 64 --temperature 0.8 --top-p 0.95 --seed 1 "def read_json(path):"
