// config.json and generation_config.json of a Hugging Face model folder, validated.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace nanovllm {

struct ModelConfig {
  std::filesystem::path path;           // the config.json it came from
  std::string architecture;             // architectures[0], e.g. "Qwen3ForCausalLM"
  std::string model_type;               // e.g. "qwen3"
  // Required.
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  // Optional, with Hugging Face's defaults.
  int head_dim = 0;                     // default hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // rope_scaling / rope_parameters: "default" (none) or "llama3" (Llama 3.1's frequency
  // rescaling: wavelengths past original/low_freq_factor divided by factor, those under
  // original/high_freq_factor kept, a smooth blend between).
  std::string rope_type = "default";
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 1.0;
  int rope_original_max_positions = 0;
  DType torch_dtype = DType::F32;       // the dtype the checkpoint was saved in
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  // Sliding-window attention's window (Mistral 7B v0.1: 4,096), 0 for none. A config's
  // sliding_window counts only where it applies: without a use_sliding_window field (Mistral),
  // or with it true (Qwen2/Qwen3: refused). We attend over every key, so the engine caps a
  // sequence at the window (usable_positions), where the two are the same.
  int sliding_window = 0;
  // Mixture of experts (Mixtral: num_local_experts; Qwen3-MoE: num_experts), 0 for a dense MLP.
  // Each token's MLP is the weighted sum of experts_per_token experts (num_experts_per_tok) of
  // moe_intermediate_size (Mixtral: intermediate_size), picked by a softmax router; their weights
  // renormalised to sum 1 when norm_topk_prob (Mixtral's configs: always, no field). Qwen3-MoE keeps a dense MLP of
  // intermediate_size in the layers listed in mlp_only_layers and in those whose index + 1 is
  // not a multiple of decoder_sparse_step.
  int num_experts = 0;
  int experts_per_token = 0;
  int moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  std::string hidden_act = "silu";
  std::vector<int> eos_token_ids;       // from config.json; generation_config may override
  std::optional<int> bos_token_id;
};

// The longest sequence the model runs as its checkpoint defines it: max_position_embeddings, or
// the sliding window when shorter (past it, full attention would differ from the model's).
inline int usable_positions(const ModelConfig& c) {
  return c.sliding_window > 0 && c.sliding_window < c.max_position_embeddings ? c.sliding_window
                                                                               : c.max_position_embeddings;
}

// Whether layer `layer` has a mixture-of-experts MLP (see ModelConfig::num_experts).
inline bool is_moe_layer(const ModelConfig& c, int layer) {
  if (c.num_experts == 0) return false;
  for (int l : c.mlp_only_layers)
    if (l == layer) return false;
  return (layer + 1) % c.decoder_sparse_step == 0;
}

struct GenerationConfig {
  bool present = false;                 // whether generation_config.json existed
  std::vector<int> eos_token_ids;
  std::optional<int> bos_token_id;
  std::optional<int> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<int> max_new_tokens;
};

// Parses and validates JSON text; `where` names the file in errors. Errors name the field:
// a missing required field, a wrong type, a non-positive size, heads not divisible by kv heads,
// an unknown dtype, or a feature we cannot run (rope scaling, sliding window, another activation).
ModelConfig parse_model_config(const std::string& json_text, const std::filesystem::path& where);
ModelConfig load_model_config(const std::filesystem::path& model_dir);

GenerationConfig parse_generation_config(const std::string& json_text,
                                         const std::filesystem::path& where);
// Returns a GenerationConfig with present=false when the folder has no generation_config.json.
GenerationConfig load_generation_config(const std::filesystem::path& model_dir);

// Reads a whole small file into a string; Error naming the path if it cannot.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace nanovllm
