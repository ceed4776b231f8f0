// Qwen3MoeForCausalLM (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's decoder (q/k norms) whose MLPs
// are mixtures of experts: a router ("mlp.gate") picks num_experts_per_tok of num_experts
// SwiGLU experts of moe_intermediate_size, weighted by their softmax, renormalised when
// norm_topk_prob; layers in mlp_only_layers (or off the decoder_sparse_step) keep a dense MLP.
#include "models/decoder_lm.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_qwen3_moe(const ModelConfig& c, Backend& b) {
  DecoderOptions o;
  o.qk_norm = true;
  return make_decoder_lm(c, b, o);  // the default MoE names are Qwen3-MoE's
}

}  // namespace nanovllm
