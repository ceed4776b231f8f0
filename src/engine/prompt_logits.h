// One prefill step over whole prompts, returning logits at every position. It is what the
// fixture tests compare with Hugging Face, and the main job until the engine (scheduler, block
// manager) exists; it builds the same AttentionMetadata the engine will, over a paged cache.
#pragma once

#include <cstdint>
#include <vector>

#include "models/model.h"

namespace nanovllm {

struct PromptLogits {
  int64_t vocab_size = 0;
  std::vector<std::vector<float>> logits;  // per prompt: (len, vocab) row-major
};

// Error for an empty prompt, a token id outside the vocabulary, or a prompt longer than
// max_position_embeddings.
PromptLogits prompt_logits(CausalLM& model, Backend& backend,
                           const std::vector<std::vector<int32_t>>& prompts, int block_size = 16);

}  // namespace nanovllm
