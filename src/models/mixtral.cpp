// MixtralForCausalLM (Mixtral 8x7B, 8x22B): Mistral's decoder (decoder_lm.cpp) whose MLPs are
// mixtures of experts: a router ("block_sparse_moe.gate") picks num_experts_per_tok of
// num_local_experts SwiGLU experts (w1 gate, w3 up, w2 down) per token, weighted by the softmax
// of their router logits renormalised over the chosen ones (ModelConfig::norm_topk_prob, which
// Mixtral's configs imply).
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_mixtral(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.moe = {.block = "block_sparse_moe", .router = "gate", .gate = "w1", .up = "w3", .down = "w2"};
  return make_decoder_lm(c, b, o);
}

}  // namespace nanovllm
