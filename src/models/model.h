// What every architecture provides to the engine. A new architecture is one file in
// src/models/ and one line in registry.cpp (or a register_architecture call from outside).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layers/param_registry.h"
#include "loader/model_config.h"
#include "runtime/backend.h"

namespace nanovllm {

// The paged KV cache of one model: per layer, K and V of shape
// (num_blocks, block_size, num_kv_heads, head_dim), owned by whoever allocated it (the runner).
struct KVCache {
  int block_size = 0;
  int num_blocks = 0;
  std::vector<Tensor> k, v;  // one per layer
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  // Every parameter the model expects, with its checkpoint name and shape.
  virtual ParamRegistry& params() = 0;
  // Hidden states (T, H) after the final norm for the packed tokens of one step; writes this
  // step's K/V into `cache` at meta.slot_mapping and attends over it.
  virtual Tensor forward(const Tensor& input_ids, const AttentionMetadata& meta, KVCache& cache) = 0;
  // Logits (R, V) for hidden rows (R, H).
  virtual Tensor compute_logits(const Tensor& hidden) = 0;
  // K/V shape per layer, for the runner to size the cache.
  virtual int num_kv_heads() const = 0;
  virtual int head_dim() const = 0;

  // Debugging aid (layer-by-layer comparison of backends): when set, forward() calls it with
  // named intermediate activations of each layer, valid only during the call. Unset, it costs
  // one branch per point.
  using Tap = std::function<void(const char* name, int layer, const Tensor& t)>;
  void set_tap(Tap tap) { tap_ = std::move(tap); }

 protected:
  Tap tap_;
};

using ModelFactory = std::function<std::unique_ptr<CausalLM>(const ModelConfig&, Backend&)>;

// Adds (or replaces) an architecture, keyed by config.json's architectures[0].
void register_architecture(const std::string& name, ModelFactory factory);
std::vector<std::string> registered_architectures();
// Builds the model for config.architecture (falling back to model_type when the config has no
// architectures list). Error naming the architecture and the known ones if it is not known.
std::unique_ptr<CausalLM> create_model(const ModelConfig& config, Backend& backend);

// Reads config.json, opens the checkpoint, builds the model and loads its weights.
// `progress` (optional) follows the weight conversion: ParamRegistry::load's callback.
std::unique_ptr<CausalLM> load_model(const std::filesystem::path& model_dir, Backend& backend,
                                     const ParamRegistry::Progress& progress = {});

}  // namespace nanovllm
