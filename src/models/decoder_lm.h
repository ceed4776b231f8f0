// The decoder that the Llama family shares (decoder_lm.cpp): what differs between its members
// is a few options, so an architecture of the family is one small file that picks them.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "models/model.h"

namespace nanovllm {

struct DecoderOptions {
  bool qk_norm = false;  // RMSNorm on each query and key head before the rotation (Qwen3)
  // Biases of q/k/v and of o_proj; unset: config.json's attention_bias for both (Llama, Qwen3).
  // Qwen2 always has q/k/v biases and never an o_proj bias, whatever its config says.
  std::optional<bool> qkv_bias, o_bias;
  // Mixture-of-experts layers (ModelConfig::num_experts): the checkpoint names of the block, its
  // router and its experts' gate, up and down matrices ("<layer>.<block>.experts.<e>.<gate>").
  struct MoeNames {
    std::string block = "mlp", router = "gate", gate = "gate_proj", up = "up_proj", down = "down_proj";
  };
  MoeNames moe;
};

std::unique_ptr<CausalLM> make_decoder_lm(const ModelConfig& config, Backend& backend, const DecoderOptions& options);

}  // namespace nanovllm
