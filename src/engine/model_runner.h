// Runs one scheduled step through the model: builds the batch (input ids, positions, slot
// mapping, block tables, cumulative lengths) in fixed-capacity buffers, runs the forward pass
// over the paged KV cache, computes logits only for the sequences that sample, and samples.
// It owns the KV cache and, on a GPU, the decode CUDA graphs (docs/engine.md).
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "models/model.h"
#include "nanovllm/config.h"

namespace nanovllm {

class ModelRunner {
 public:
  // Sizes the KV cache: config.num_kvcache_blocks when set; else on a device, what
  // gpu_memory_utilization leaves after the weights and the profiled peak of the largest step;
  // else cpu_kvcache_bytes. Then allocates it and captures the decode graphs (unless
  // enforce_eager or the backend has none). Error when the cache would not hold one block.
  ModelRunner(CausalLM& model, Backend& backend, const Config& config);
  // Sampled tokens, one per scheduled sequence whose `samples` is set, in schedule order.
  SamplerOutput run(const SchedulerOutput& step, const SamplingBatch& batch);
  int num_blocks() const { return cache_.num_blocks; }
  size_t num_graphs() const { return graphs_.size(); }
  size_t step_memory_bytes() const { return step_memory_; }
  // Bytes of KV cache per block, for sizing the cache.
  static int64_t block_bytes(const ModelConfig& c, int block_size, DType dtype);

 private:
  // One step's inputs on the host, in the layout of the device buffers.
  struct HostBatch {
    std::vector<int32_t> ids, positions, slots, cu{0}, ctx, tables, sample_rows;
    int num_seqs = 0, max_q = 0, max_ctx = 0, table_stride = 1;
  };
  struct Graph {
    std::unique_ptr<StepGraph> graph;
    Tensor logits;  // (B, V) in step memory, valid after replay until the next step
  };

  int pick_graph_size(int n) const;
  HostBatch build(const SchedulerOutput& step, int pad_to) const;
  static HostBatch padding_batch(int rows, int table_stride);
  // Copies a batch into the fixed buffers; returns the input ids and fills `meta`.
  Tensor upload(const HostBatch& b, AttentionMetadata& meta, bool decode_graph_shape);
  Tensor logits_of(const Tensor& ids, const AttentionMetadata& meta, const HostBatch& b, KVCache& cache);
  void allocate_cache(int num_blocks);
  int size_cache_from_memory();
  void capture_graphs();

  CausalLM& model_;
  Backend& backend_;
  Config config_;
  int max_tokens_, max_seqs_, max_blocks_per_seq_;
  bool pad_decodes_;               // decode steps run at a ladder size (graph or not): invariance
  std::vector<int> graph_sizes_;   // the decode batch-size ladder, ascending
  // A step's int32 inputs (ids, positions, slots, cu_seqlens, context lengths, block tables)
  // live in one device buffer and go up in one copy (StepLayout); rows_buf_ holds the sampled
  // rows of prefill steps. Fixed capacity.
  Tensor step_buf_, rows_buf_;
  std::vector<int32_t> step_host_;  // the packed copy on the host, reused
  KVCache cache_;
  size_t step_memory_ = 0;
  std::map<int, Graph> graphs_;
};

}  // namespace nanovllm
