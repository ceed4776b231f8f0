// Runs one scheduled step through the model: builds the batch (input ids, positions, slot
// mapping, block tables, cumulative lengths), runs the forward pass over the paged KV cache,
// computes logits only for the sequences that sample, and samples. It owns the KV cache.
#pragma once

#include <vector>

#include "engine/scheduler.h"
#include "models/model.h"

namespace nanovllm {

class ModelRunner {
 public:
  ModelRunner(CausalLM& model, Backend& backend, int num_blocks, int block_size);
  // Sampled tokens, one per scheduled sequence whose `samples` is set, in schedule order.
  SamplerOutput run(const SchedulerOutput& step, const SamplingBatch& batch);
  // Bytes of KV cache per block, for sizing the cache.
  static int64_t block_bytes(const ModelConfig& c, int block_size, DType dtype);

 private:
  Tensor upload(const std::vector<int32_t>& v, std::vector<int64_t> shape);
  CausalLM& model_;
  Backend& backend_;
  KVCache cache_;
};

}  // namespace nanovllm
