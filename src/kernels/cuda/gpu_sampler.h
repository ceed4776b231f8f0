// The CUDA backend's sampler: cpu::sample's semantics on device logits (kernels/cuda/sampler.h).
//
// Constructed once with its capacities; it allocates every device buffer and the pinned host
// staging there, and never again. launch() packs the batch into pinned memory, uploads it with
// one cudaMemcpyAsync, launches the kernel and queues one cudaMemcpyAsync of the results back;
// collect() waits for that copy alone and unpacks. The two copies run on the sampler's own
// streams, joined to the logits' stream by events: the upload overlaps the work before the
// kernel (the forward pass that makes the logits), and the result copy does not sit in the
// logits' stream ahead of the next step (a copy in the stream between kernels holds the GPU for
// its few µs of latency; batch-1 decode paid ~3 such copies per token). Two launches may be outstanding (the pinned
// buffers come in two halves, each reused only after its launch was collected): the engine
// queues step n + 1 before it collects step n. sample() is launch() then collect(). The tokens
// of the latest launch stay on the device at device_tokens() until the next launch's kernel
// overwrites them (stream order), which is what a step queued in between reads its inputs from.
// A batch beyond a capacity is an Error that names it (nothing is allocated on the way). Not
// thread-safe: one engine thread owns it.
//
// Memory: device and pinned ~(60 + 8 max_logprobs) bytes per row per half (the packed batch and
// the results have two pinned halves; the batch also two device copies, the results one), plus
// 32 device bytes per 8192 logits per row (the split rows' partial results, sized from max_rows
// and vocab); per token of penalty history or ban list, 8 bytes pinned + 8 device (the two
// halves) + 16 device (the dedup table).
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
  cudaEvent_t out_ready_[2] = {nullptr, nullptr};  // recorded on download_ after the half's result copy
  struct Launched {
    int half;
    int64_t R;
    int N;
  };
  Launched outstanding_[2] = {};  // oldest first
  int num_outstanding_ = 0;
  int half_ = 1;                  // the half the latest launch used
  // Per half: the packed batch on the device (a half's launch n + 2 may upload while launch n + 1's
  // kernel still reads the other half), and the events that join the streams.
  void* dev_in_[2] = {nullptr, nullptr};
  cudaEvent_t in_ready_[2] = {nullptr, nullptr};  // recorded on upload_ after the half's upload
  cudaEvent_t sampled_[2] = {nullptr, nullptr};   // recorded on stream_ after the half's kernel
  cudaStream_t upload_ = nullptr, download_ = nullptr;  // owned
  void* dev_out_ = nullptr;  // single: device_tokens() is read at a fixed address by graphs
  void* workspace_ = nullptr;
  void release() noexcept;
};

}  // namespace nanovllm
