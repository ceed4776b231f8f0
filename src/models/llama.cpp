// LlamaForCausalLM (Llama 2, Llama 3 and 3.1, Code Llama) and MistralForCausalLM (Mistral 7B
// and later dense Mistral models, whose v0.1 sliding window caps sequences at it:
// ModelConfig::sliding_window): the shared decoder (decoder_lm.cpp)
// without per-head q/k norms. Llama 3.1's "llama3" rope scaling is in the rotary table
// (layers/rotary.cpp); attention_bias applies to q, k, v and o as in transformers.
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_llama(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.qk_norm = false;
  return make_decoder_lm(c, b, o);
}

}  // namespace nanovllm
