#include "tokenizer/normalizer.h"

#include <nlohmann/json.hpp>

#include <vector>

#include "runtime/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

using nlohmann::json;

namespace {

class NfcNormalizer final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    if (!unicode::is_nfc_quick(s)) s = unicode::nfc(s);
  }
};

// Prepends a string to non-empty text (HF leaves empty text empty).
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

// Replaces every match of a pattern (a literal string or a regex) with `content`.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& s) const override {
    std::string out;
    bool changed = false;
    size_t prev = 0;
    pattern_->for_each_match(s, [&](Regex::Match m) {
      if (!changed) out.reserve(s.size() + 16);
      changed = true;
      out.append(s, prev, m.start - prev);
      out += content_;
      prev = m.end;
    });
    if (!changed) return;
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& s) const override {
    for (const auto& n : steps_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

const std::string& string_field(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw Error(std::string("tokenizer.json: ") + what + " needs a string \"" + key + "\"");
  return it->get_ref<const std::string&>();
}

}  // namespace

// {"String": "..."} or {"Regex": "..."}: the pattern object of Replace and Split.
std::unique_ptr<Regex> make_pattern(const json& j, const char* what) {
  if (j.is_object() && j.size() == 1) {
    if (auto it = j.find("String"); it != j.end() && it->is_string())
      return std::make_unique<Regex>(it->get<std::string>(), /*literal=*/true);
    if (auto it = j.find("Regex"); it != j.end() && it->is_string())
      return std::make_unique<Regex>(it->get<std::string>());
  }
  throw Error(std::string("tokenizer.json: ") + what + " pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error("tokenizer.json: a normalizer must be an object with a \"type\"");
  const std::string& type = j["type"].get_ref<const std::string&>();
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(string_field(j, "prepend", "Prepend normalizer"));
  if (type == "Replace") {
    if (!j.contains("pattern")) throw Error("tokenizer.json: Replace normalizer has no \"pattern\"");
    return std::make_unique<ReplaceNormalizer>(make_pattern(j["pattern"], "Replace normalizer"),
                                               string_field(j, "content", "Replace normalizer"));
  }
  if (type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) throw Error("tokenizer.json: Sequence normalizer has no \"normalizers\" array");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const json& step : *it)
      if (auto n = make_normalizer(step)) steps.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  throw Error("tokenizer.json: unsupported normalizer type '" + type +
              "' (supported: NFC, Prepend, Replace, Sequence)");
}

}  // namespace nanovllm
