// Rotary position embedding tables. cos/sin are computed once for every position the model
// supports, the way Hugging Face computes them (float32 inverse frequencies times the position),
// so that our rotations match its to the last bit wherever float32 allows.
#pragma once

#include <vector>

#include "loader/model_config.h"
#include "runtime/backend.h"

namespace nanovllm {

// The head_dim / 2 inverse frequencies of config's rope: theta^(-2i/d), then, for rope type
// "llama3", Llama 3.1's rescaling, in float32 operations in transformers' order.
std::vector<float> rope_inv_freq(const ModelConfig& config);

class RotaryEmbedding {
 public:
  // Table for config.max_position_embeddings positions of config.head_dim.
  RotaryEmbedding(Backend& backend, const ModelConfig& config);
  // (max_positions, head_dim): row p = [cos(p f_0) .. cos(p f_{d/2-1}), sin(p f_0) .. ]
  const Tensor& cos_sin() const { return cos_sin_; }

 private:
  Tensor cos_sin_;
};

}  // namespace nanovllm
