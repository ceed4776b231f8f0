// load_format "dummy" (as vLLM's): a model with deterministic pseudo-random weights, built from a
// config.json alone or from a built-in preset's config (src/bench/model_presets.h). For
// benchmarks and tests: no checkpoint, no download, no tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "layers/param_registry.h"
#include "models/model.h"

namespace nanovllm {

constexpr uint64_t kDummyWeightSeed = 0x6e616e6f766c6c6dULL;  // "nanovllm"

// Whether `model` names a built-in preset ("qwen3-0.6b", "Qwen/Qwen3-8B", ...). The engine
// then takes the config from the preset and never looks for a folder.
bool is_model_preset(const std::string& model);

// The config of a preset, else of `model`'s config.json (a folder, or a hub id found in the
// local cache). Error naming the problem otherwise.
ModelConfig dummy_model_config(const std::string& model);

// Fills every registered parameter through the backend: norm weights ("...norm.weight") 1,
// biases 0, everything else uniform with standard deviation 0.02, rounded to bf16 (so that
// every backend holds the same values). Value k of a parameter depends only on the seed, the
// parameter's name and k, so the result does not depend on the thread count or chunking.
void fill_dummy_weights(const ParamRegistry& params, Backend& backend, uint64_t seed = kDummyWeightSeed);

// dummy_model_config + create_model + fill_dummy_weights.
std::unique_ptr<CausalLM> load_dummy_model(const std::string& model, Backend& backend,
                                           uint64_t seed = kDummyWeightSeed);

}  // namespace nanovllm
