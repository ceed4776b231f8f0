// The CUDA backend's sampler: cpu::sample's semantics on device logits (kernels/cuda/sampler.h).
//
// Constructed once with its capacities; it allocates every device buffer and the pinned host
// staging there, and never again. launch() packs the batch into pinned memory, uploads it with
// one cudaMemcpyAsync, launches the kernel and queues one cudaMemcpyAsync of the results back;
// collect() waits for that copy alone and unpacks. Two launches may be outstanding (the pinned
// buffers come in two halves, each reused only after its launch was collected): the engine
// queues step n + 1 before it collects step n. sample() is launch() then collect(). The tokens
// of the latest launch stay on the device at device_tokens() until the next launch's kernel
// overwrites them (stream order), which is what a step queued in between reads its inputs from.
// A batch beyond a capacity is an Error that names it (nothing is allocated on the way). Not
// thread-safe: one engine thread owns it.
//
// Memory: device and pinned ~(60 + 8 max_logprobs) bytes per row, plus 32 device bytes per
// 8192 logits per row (the split rows' partial results, sized from max_rows and vocab); per
// token of penalty history or ban list, 4 bytes pinned + 4 device + 16 device (the dedup table).
// Only rows with a penalty on (repetition != 1, presence or frequency != 0, and a token list)
// send their history. It tells the launcher when no row can take the split path (a hint that
// saves the split pass's launch).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/sampling.h"

namespace nanovllm {

class GpuSampler {
 public:
  // max_rows: rows per sample() call; vocab: V of the logits (<= 2^18); max_history_tokens:
  // prompt + output tokens of all penalised rows of one batch together; max_logprobs: the
  // largest batch.max_logprobs; max_banned_tokens: banned ids of one batch together (-1: 64 per
  // row). The stream is the one the logits are produced on (not owned).
  GpuSampler(int64_t max_rows, int64_t vocab, int64_t max_history_tokens, int max_logprobs,
             cudaStream_t stream, int64_t max_banned_tokens = -1);
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // Samples rows 0 .. R-1 of logits (R, vocab) bf16 on the device, after the work already
  // queued on the stream. The batch's vectors have R entries each (num_prompt_tokens only
  // needs them for rows with a penalty on). Returns when the results are on the host.
  SamplerOutput sample(const void* logits_bf16_device, int64_t R, const SamplingBatch& batch);
  // The same in two halves: launch() returns once the work is queued (the batch is read before
  // it returns); collect() returns the oldest uncollected launch's results, waiting for them.
  // Error: a third launch before the first is collected, or a collect with none outstanding.
  void launch(const void* logits_bf16_device, int64_t R, const SamplingBatch& batch);
  SamplerOutput collect();
  // (max_rows,) int32 on the device: the latest launch's tokens, rows 0 .. R-1.
  const int32_t* device_tokens() const;
  int outstanding() const { return num_outstanding_; }  // launches not yet collected

  int64_t max_rows() const { return max_rows_; }
  int64_t vocab() const { return vocab_; }
  int64_t max_history_tokens() const { return max_hist_; }
  int64_t max_banned_tokens() const { return max_ban_; }
  int max_logprobs() const { return max_logprobs_; }

 private:
  int64_t max_rows_, vocab_, max_hist_, max_ban_;
  int max_logprobs_;
  cudaStream_t stream_;
  size_t in_bytes_ = 0, out_bytes_ = 0, ws_bytes_ = 0;
  void* host_in_[2] = {nullptr, nullptr};   // pinned: the packed batch, per half
  void* host_out_[2] = {nullptr, nullptr};  // pinned: the results, per half
  cudaEvent_t out_ready_[2] = {nullptr, nullptr};  // recorded after the half's result copy
  struct Launched {
    int half;
    int64_t R;
    int N;
  };
  Launched outstanding_[2] = {};  // oldest first
  int num_outstanding_ = 0;
  int half_ = 1;                  // the half the latest launch used
  void* dev_in_ = nullptr;
  void* dev_out_ = nullptr;
  void* workspace_ = nullptr;
  void release() noexcept;
};

}  // namespace nanovllm
