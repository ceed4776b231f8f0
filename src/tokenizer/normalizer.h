// Normalizers of tokenizer.json: NFC, Prepend, Replace and Sequence. Anything else is refused
// with an Error naming its type.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

namespace nanovllm {

class Regex;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Normalizes `s` (valid UTF-8) in place.
  virtual void normalize(std::string& s) const = 0;
};

// A {"String": ...} / {"Regex": ...} pattern object (Replace, Split); `what` names the user in
// errors.
std::unique_ptr<Regex> make_pattern(const nlohmann::json& j, const char* what);

// The "normalizer" field; nullptr for JSON null.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

}  // namespace nanovllm
