#include "bench/model_presets.h"

#include <algorithm>
#include <cctype>

#include "models/model.h"
#include "runtime/error.h"

namespace nanovllm::bench {
namespace {

// The fields of Qwen3's published config.json that vary between sizes; the rest is shared.
std::string qwen3_config(int hidden, int intermediate, int layers, int heads, bool tied) {
  const std::string n = std::to_string(layers);
  return R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": )" + std::to_string(hidden) + R"(,
  "initializer_range": 0.02,
  "intermediate_size": )" + std::to_string(intermediate) + R"(,
  "max_position_embeddings": 40960,
  "max_window_layers": )" + n + R"(,
  "model_type": "qwen3",
  "num_attention_heads": )" + std::to_string(heads) + R"(,
  "num_hidden_layers": )" + n + R"(,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": )" + (tied ? "true" : "false") + R"(,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}
)";
}

const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
}
)";

const char* kQwen25_7B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 3584,
  "initializer_range": 0.02,
  "intermediate_size": 18944,
  "max_position_embeddings": 131072,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 28,
  "num_hidden_layers": 28,
  "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_mrope": false,
  "use_sliding_window": false,
  "vocab_size": 152064
}
)";

const char* kMistral7B_v03 = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0",
  "use_cache": true,
  "vocab_size": 32768
}
)";

// Qwen/Qwen3-30B-A3B: 48 layers of 128 experts (8 per token) of 768; 30.5B parameters, 3.3B active.
const char* kQwen3_30B_A3B = R"({
  "architectures": ["Qwen3MoeForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "decoder_sparse_step": 1,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 6144,
  "max_position_embeddings": 40960,
  "max_window_layers": 48,
  "mlp_only_layers": [],
  "model_type": "qwen3_moe",
  "moe_intermediate_size": 768,
  "norm_topk_prob": true,
  "num_attention_heads": 32,
  "num_experts": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 48,
  "num_key_value_heads": 4,
  "output_router_logits": false,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}
)";

// mistralai/Mixtral-8x7B-v0.1: 32 layers of 8 experts (2 per token) of 14,336; 46.7B
// parameters, 12.9B active.
const char* kMixtral8x7B = R"({
  "architectures": ["MixtralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mixtral",
  "num_attention_heads": 32,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "num_local_experts": 8,
  "output_router_logits": false,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.02,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.36.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
}
)";

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> presets = {
      {"qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3ForCausalLM", qwen3_config(1024, 3072, 28, 16, true)},
      {"qwen3-1.7b", "Qwen/Qwen3-1.7B", "Qwen3ForCausalLM", qwen3_config(2048, 6144, 28, 16, true)},
      {"qwen3-4b", "Qwen/Qwen3-4B", "Qwen3ForCausalLM", qwen3_config(2560, 9728, 36, 32, true)},
      {"qwen3-8b", "Qwen/Qwen3-8B", "Qwen3ForCausalLM", qwen3_config(4096, 12288, 36, 32, false)},
      {"qwen3-14b", "Qwen/Qwen3-14B", "Qwen3ForCausalLM", qwen3_config(5120, 17408, 40, 40, false)},
      {"llama-3.1-8b", "meta-llama/Llama-3.1-8B", "LlamaForCausalLM", kLlama31_8B},
      {"qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen2ForCausalLM", kQwen25_7B},
      {"mistral-7b", "mistralai/Mistral-7B-v0.3", "MistralForCausalLM", kMistral7B_v03},
      {"qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", "Qwen3MoeForCausalLM", kQwen3_30B_A3B},
      {"mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", "MixtralForCausalLM", kMixtral8x7B},
  };
  return presets;
}

const ModelPreset* find_model_preset(std::string_view model) {
  for (const auto& p : model_presets())
    if (iequal(model, p.name) || iequal(model, p.hub_id)) return &p;
  return nullptr;
}

ModelConfig preset_model_config(const ModelPreset& preset) {
  const auto known = registered_architectures();
  if (std::find(known.begin(), known.end(), preset.architecture) == known.end()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error("model preset '" + preset.name + "' needs architecture '" + preset.architecture +
                "', which this build has not registered (registered: " + list + ")");
  }
  return parse_model_config(preset.config_json, "preset " + preset.name + " (" + preset.hub_id + " config.json)");
}

}  // namespace nanovllm::bench
