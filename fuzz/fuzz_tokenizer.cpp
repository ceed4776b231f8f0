// libFuzzer target for the tokenizer, on real tokenizers: the committed GPT-2-style one and the
// fetched Qwen3 (NFC, regex split), Llama 3 (ignore_merges), Llama 2 (Prepend/Replace, byte
// fallback, Strip decoder) and Gemma 3 (literal Split, 6k added tokens) when
// scripts/fetch-tokenizers.sh has put them in .cache/tokenizers/ (set NANOVLLM_FUZZ_GEMMA=0 to
// leave the 33 MB Gemma out).
//
// The first input byte picks a tokenizer and a mode; the rest is the payload.
//  - encode: any bytes either encode or raise nanovllm::Error (invalid UTF-8). The ids must be
//    inside the vocabulary; decode of them must be valid UTF-8; for Llama 3 (no normalizer,
//    no stripping tokens) decode(encode(x)) must give x back; streaming must equal decode.
//  - decode: the payload as int32 ids (arbitrary, out of range included) must decode to valid
//    UTF-8, and streaming must equal decode.
// A crash, a sanitizer report, another exception or a broken property is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

struct Loaded {
  std::unique_ptr<nanovllm::Tokenizer> tok;
  bool round_trips;  // decode(encode(x)) == x for every valid x
};

std::vector<Loaded>& tokenizers() {
  static std::vector<Loaded> all = [] {
    std::vector<Loaded> v;
    // This file is fuzz/fuzz_tokenizer.cpp in the repository: the data is found from there.
    const std::filesystem::path root = std::filesystem::path(__FILE__).parent_path().parent_path();
    v.push_back({nanovllm::Tokenizer::from_folder(root / "tests/fixtures/tokenizers/gpt2-style"), false});
    const char* gemma = std::getenv("NANOVLLM_FUZZ_GEMMA");
    for (const char* name : {"qwen3", "llama3", "llama2", "gemma3"}) {
      if (std::string(name) == "gemma3" && gemma && std::string(gemma) == "0") continue;
      auto dir = root / ".cache/tokenizers" / name;
      if (std::filesystem::exists(dir / "tokenizer.json"))
        v.push_back({nanovllm::Tokenizer::from_folder(dir), std::string(name) == "llama3"});
    }
    return v;
  }();
  return all;
}

bool valid_utf8(const std::string& s) { return nanovllm::unicode::find_invalid_utf8(s) == std::string::npos; }

void check_streaming(const nanovllm::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  nanovllm::StreamingDetokenizer stream(tok, skip);
  std::string all;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    if (!valid_utf8(piece)) __builtin_trap();
    all += piece;
  }
  all += stream.flush();
  if (all != tok.decode(ids, skip)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto& all = tokenizers();
  const Loaded& t = all[data[0] % all.size()];
  const bool decode_mode = (data[0] / all.size()) % 4 == 3;
  const bool flag = (data[0] >> 7) & 1;
  const nanovllm::Tokenizer& tok = *t.tok;
  if (decode_mode) {
    std::vector<int32_t> ids((size - 1) / 4);
    if (!ids.empty()) std::memcpy(ids.data(), data + 1, ids.size() * 4);
    // Mostly valid ids (folded into the vocabulary), some raw (negative, huge).
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] >= 0 && (i % 5) != 4) ids[i] %= tok.vocab_size() + 16;
    if (!valid_utf8(tok.decode(ids, flag))) __builtin_trap();
    check_streaming(tok, ids, flag);
    return 0;
  }
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text, flag);
  } catch (const nanovllm::Error&) {
    if (valid_utf8(text)) __builtin_trap();  // only invalid UTF-8 may be refused
    return 0;
  }
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  const std::string back = tok.decode(ids, false);
  if (!valid_utf8(back)) __builtin_trap();
  if (t.round_trips && !flag && back != text) __builtin_trap();
  check_streaming(tok, ids, false);
  return 0;
}
