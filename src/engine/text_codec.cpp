#include "engine/text_codec.h"

#include "runtime/error.h"

namespace nanovllm {

std::unique_ptr<TextCodec> load_text_codec(const std::filesystem::path& model_dir) {
  // Until the tokenizer lands (its own issue), models run on token ids; a folder that has a
  // tokenizer.json gets no text rather than wrong text.
  (void)model_dir;
  return nullptr;
}

}  // namespace nanovllm
