// MistralForCausalLM (Mistral 7B, Mistral NeMo, Codestral-style dense models): Llama's decoder
// (decoder_lm.cpp, no q/k norms, no biases). Mistral 7B v0.1's sliding window (4,096) is honoured
// by capping sequences at the window (ModelConfig::sliding_window, usable_positions), where full
// attention and windowed attention agree; later versions set none.
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_mistral(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.qk_norm = false;
  return make_decoder_lm(c, b, o);
}

}  // namespace nanovllm
