// Qwen2ForCausalLM (Qwen2, Qwen2.5 and their Coder and Math variants): the shared decoder
// (decoder_lm.cpp) with biases on q, k and v and none on o_proj, as transformers' Qwen2 always
// builds it (its config has no attention_bias). Sliding-window layers (use_sliding_window: true)
// are refused when the config is read.
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_qwen2(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.qkv_bias = true;
  o.o_bias = false;
  return make_decoder_lm(c, b, o);
}

}  // namespace nanovllm
