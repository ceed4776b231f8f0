// Post-processors of tokenizer.json, for single sequences: TemplateProcessing (the bos/eos ids
// a model adds, e.g. Llama's "<s> $A"), ByteLevel (offsets only: no ids change) and Sequence.
// Anything else is refused with an Error naming its type.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <vector>

namespace nanovllm {

class PostProcessor {
 public:
  // From the "post_processor" field (null is allowed: nothing is added).
  explicit PostProcessor(const nlohmann::json& j);
  // Wraps `ids` in the template's special tokens (only when add_special_tokens).
  void apply(std::vector<int32_t>& ids, bool add_special_tokens) const;
  const std::vector<int32_t>& prefix() const { return prefix_; }
  const std::vector<int32_t>& suffix() const { return suffix_; }

 private:
  void add(const nlohmann::json& j);
  std::vector<int32_t> prefix_, suffix_;  // ids before and after $A in the single template
  bool has_template_ = false;
};

}  // namespace nanovllm
