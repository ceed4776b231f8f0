// Runs one scheduled step through the model: builds the batch (input ids, positions, slot
// mapping, block tables, cumulative lengths) in fixed-capacity buffers, runs the forward pass
// over the paged KV cache, computes logits only for the sequences that sample, and samples.
// It owns the KV cache and, on a GPU, the decode CUDA graphs (docs/engine.md).
#pragma once

#include <deque>
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
  // One step in two halves. launch() queues the step (inputs, forward pass, sampling) and
  // returns; collect() returns the oldest launched step's sampled tokens, one per scheduled
  // sequence whose `samples` is set, in schedule order, waiting for them. At most two launched
  // steps may be uncollected. A sequence whose last token is pending (Sequence::pending) reads
  // it on the device from the latest sampling before this launch: its pending_row must be its
  // row there.
  void launch(const SchedulerOutput& step, const SamplingBatch& batch);
  SamplerOutput collect();
  // Whether the engine should schedule asynchronously (Config::async_scheduling, "auto"
  // resolved for this backend). The decode graphs then read pending tokens on the device.
  bool async_scheduling() const { return async_; }
  int num_blocks() const { return cache_.num_blocks; }
  size_t num_graphs() const { return graphs_.size(); }
  size_t step_memory_bytes() const { return step_memory_; }
  // Bytes of KV cache per block, for sizing the cache.
  static int64_t block_bytes(const ModelConfig& c, int block_size, DType dtype);

 private:
  // One step's inputs on the host, in the layout of the device buffers.
  struct HostBatch {
    std::vector<int32_t> ids, positions, slots, cu{0}, ctx, tables, sample_rows;
    // Per token: the previous sampling's row that holds its id (a pending token), else -1.
    std::vector<int32_t> sampled_row;
    bool any_sampled_row = false;
    int num_seqs = 0, max_q = 0, max_ctx = 0, table_stride = 1;
  };
  struct StepInputs {
    Tensor ids, sampled_row;  // views of step_buf_
  };
  struct Graph {
    std::unique_ptr<StepGraph> graph;
    Tensor logits;  // (B, V) in step memory, valid after replay until the next step
  };

  int pick_graph_size(int n) const;
  HostBatch build(const SchedulerOutput& step, int pad_to) const;
  static HostBatch padding_batch(int rows, int table_stride);
  // Copies a batch into the fixed buffers; returns the input ids and fills `meta`.
  StepInputs upload(const HostBatch& b, AttentionMetadata& meta, bool decode_graph_shape);
  // `fill_pending`: first resolve the pending ids on the device (fill_sampled_ids).
  Tensor logits_of(const StepInputs& in, bool fill_pending, const AttentionMetadata& meta, const HostBatch& b,
                   KVCache& cache);
  void allocate_cache(int num_blocks);
  int size_cache_from_memory();
  void capture_graphs();

  CausalLM& model_;
  Backend& backend_;
  Config config_;
  int max_tokens_, max_seqs_, max_blocks_per_seq_;
  bool pad_decodes_;               // decode steps run at a ladder size (graph or not): invariance
  bool async_;                     // async_scheduling() (the graphs then fill pending ids)
  std::deque<bool> uncollected_;   // per launched, uncollected step: whether it sampled
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
