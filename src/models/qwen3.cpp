// Qwen3ForCausalLM: the shared decoder (decoder_lm.cpp) with RMSNorm on each query and key head
// before the rotary embedding.
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_qwen3(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.qk_norm = true;
  return make_decoder_lm(c, b, o);
}

}  // namespace nanovllm
