// Rotary position embedding tables. cos/sin are computed once for every position the model
// supports, the way Hugging Face computes them (float32 inverse frequencies times the position),
// so that our rotations match its to the last bit wherever float32 allows.
#pragma once

#include "runtime/backend.h"

namespace nanovllm {

class RotaryEmbedding {
 public:
  RotaryEmbedding(Backend& backend, int head_dim, int max_positions, double theta);
  // (max_positions, head_dim): row p = [cos(p f_0) .. cos(p f_{d/2-1}), sin(p f_0) .. ]
  const Tensor& cos_sin() const { return cos_sin_; }

 private:
  Tensor cos_sin_;
};

}  // namespace nanovllm
