// What the engine needs of a tokenizer: text to ids for string prompts, and an incremental
// decoder per request for output text and stop strings. Kept this narrow so that the engine
// does not depend on how tokenizers work.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace nanovllm {

class TextStream {
 public:
  virtual ~TextStream() = default;
  // The text completed by this token (never half a UTF-8 character).
  virtual std::string push(int32_t id) = 0;
  // Whatever is still held back at the end.
  virtual std::string flush() = 0;
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // add_special_tokens: the tokenizer's post-processor adds bos/eos (off for text that already
  // has them, such as a rendered chat template).
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const = 0;
  virtual std::unique_ptr<TextStream> stream(bool skip_special_tokens) const = 0;
};

// The model folder's tokenizer (tokenizer.json), or null when the folder has none: the engine
// then takes token-id prompts only and returns no text.
std::unique_ptr<TextCodec> load_text_codec(const std::filesystem::path& model_dir);

}  // namespace nanovllm
