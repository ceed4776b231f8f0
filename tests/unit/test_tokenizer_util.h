// Shared by the tokenizer tests: where the reference tokenizers are, loading them once, and
// reading the goldens that scripts/device/make-tokenizer-goldens.py recorded with HF tokenizers.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace nanovllm::tokenizer_test {

inline const std::vector<std::string>& reference_names() {
  static const std::vector<std::string> names = {"qwen3", "llama3", "llama2", "gemma3", "gpt2-style"};
  return names;
}

// Variants of the references (tests/fixtures/tokenizers/variants.json): a base tokenizer.json
// with some top-level fields replaced, for components no reference file uses.
inline nlohmann::json variants() {
  std::ifstream f(std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "tokenizers" / "variants.json");
  return nlohmann::json::parse(f);
}

inline std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  const nlohmann::json all = variants();  // kept alive: items() only refers to it
  for (auto& [name, v] : all.items())
    if (name[0] != '_') names.push_back(name);
  return names;
}

// The four fetched tokenizers live in .cache/tokenizers/ (scripts/fetch-tokenizers.sh, run by
// the set-up); the GPT-2-style one is committed with the fixtures.
inline std::filesystem::path reference_dir(const std::string& name) {
  if (name == "gpt2-style") return std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "tokenizers" / "gpt2-style";
  return std::filesystem::path(NANOVLLM_SOURCE_DIR) / ".cache" / "tokenizers" / name;
}

// Loads (once per process) a reference tokenizer; fails the test, naming the fix, when the
// files are missing.
inline const Tokenizer* reference_tokenizer(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  auto it = loaded.find(name);
  if (it != loaded.end()) return it->second.get();
  const nlohmann::json all_variants = variants();
  const bool is_variant = all_variants.contains(name);
  const std::string base = is_variant ? all_variants[name]["base"].get<std::string>() : name;
  auto dir = reference_dir(base);
  if (!std::filesystem::exists(dir / "tokenizer.json")) {
    ADD_FAILURE() << "reference tokenizer '" << base << "' missing at " << dir
                  << ": run scripts/fetch-tokenizers.sh (scripts/setup.sh runs it)";
    return nullptr;
  }
  std::unique_ptr<Tokenizer> tok;
  if (is_variant) {
    auto read = [](const std::filesystem::path& p) {
      std::ifstream f(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    };
    nlohmann::json j = nlohmann::json::parse(read(dir / "tokenizer.json"));
    for (auto& [key, value] : all_variants[name]["overrides"].items()) j[key] = value;
    tok = Tokenizer::from_json(j.dump(), read(dir / "tokenizer_config.json"));
  } else {
    tok = Tokenizer::from_folder(dir);
  }
  return (loaded[name] = std::move(tok)).get();
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream f(path);
  if (!f) {
    ADD_FAILURE() << "cannot open " << path;
    return lines;
  }
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline std::filesystem::path goldens_dir() {
  return std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "tokenizers" / "goldens";
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

}  // namespace nanovllm::tokenizer_test
