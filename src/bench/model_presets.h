// Built-in model configs for benchmarks with random weights (load_format "dummy"): the
// config.json of published checkpoints, so `nanovllm bench --model qwen3-8b --load-format dummy`
// needs no download, no weight files and no tokenizer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "loader/model_config.h"

namespace nanovllm::bench {

struct ModelPreset {
  std::string name;          // "qwen3-0.6b"
  std::string hub_id;        // "Qwen/Qwen3-0.6B", where the config was published
  std::string architecture;  // architectures[0] of the config
  std::string config_json;   // the published config.json
};

const std::vector<ModelPreset>& model_presets();
// By name or hub id, ignoring case; null when `model` names no preset.
const ModelPreset* find_model_preset(std::string_view model);
// The preset's config, parsed and validated as a config.json. Error naming the architecture when
// this build has not registered it (Llama-3.1-8B, until a Llama model file exists).
ModelConfig preset_model_config(const ModelPreset& preset);

}  // namespace nanovllm::bench
