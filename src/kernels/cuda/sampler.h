// Sampling on the GPU: the CUDA twin of cpu::sample (kernels/cpu/sampler.cpp), with the same
// semantics, row by row over logits (R, V) bf16:
//   1. logprobs of the raw logits (log_softmax before any setting): of the chosen token, and
//      the top-N (id, logprob) best first, ties to the lower id;
//   2. banned ids to -inf; repetition penalty over the distinct ids of prompt + output
//      (divide positive logits, multiply negative ones), presence and frequency penalties over
//      the output's token counts;
//   3. temperature <= 0: argmax, lowest id on ties;
//   4. else l = logits / T (times the float 1/T, as the CPU), keep the top-k, then the smallest
//      top-p prefix (relative to the kept mass, at least one token), drop p < min_p * p_max,
//      and pick argmax p_i / E_i, E_i = -log u(seed, step, i) (runtime/sampling.h, bit-exact).
// No full-vocabulary sort: the top-k and top-p boundaries are found by radix selection over
// order-preserving integer keys (docs in sampler.cu). Greedy and temperature-only rows (no
// lists, no logprobs) are split over several blocks each, with the same results. A row's token
// depends only on that row's logits and settings, never on the other rows or its position in
// the batch.
//
// Plain C++17 over raw device pointers (like ops.h). The launcher checks its preconditions
// and throws nanovllm::Error naming the op and the argument, queues its work on `stream` and
// returns: no allocation, no synchronisation, so a CUDA graph can capture it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nanovllm::gpu {

// The largest vocabulary the sampler handles: token ids must fit 18 bits of its sort keys.
constexpr int64_t kSamplerMaxVocab = int64_t{1} << 18;
// The most top logprobs per row it returns.
constexpr int kSamplerMaxLogprobs = 1024;

// Per-row settings, device arrays of R elements (runtime/sampling.h's SamplingBatch).
struct SamplerParams {
  const float* temperature = nullptr;         // (R,) <= 0: greedy
  const int32_t* top_k = nullptr;             // (R,) <= 0: off
  const float* top_p = nullptr;               // (R,) >= 1: off
  const float* min_p = nullptr;               // (R,) <= 0: off
  const float* repetition_penalty = nullptr;  // (R,) 1: off
  const float* presence_penalty = nullptr;    // (R,) 0: off
  const float* frequency_penalty = nullptr;   // (R,) 0: off
  const uint64_t* seed = nullptr;             // (R,)
  const uint64_t* step = nullptr;             // (R,) the row's output index
  // A host-side hint, not a device array: false when the caller knows no row takes the split
  // path (greedy or temperature-only, no lists, max_logprobs == 0), which saves a launch.
  // Either value samples the same tokens.
  bool split_rows = true;
};

// Token lists in CSR: row r owns ids[offsets[r] .. offsets[r + 1]). offsets (R + 1,) int32,
// offsets[0] == 0, non-decreasing; ids (offsets[R],) int32. Ids outside [0, V) are ignored, as
// the CPU ignores them. offsets == nullptr: every row's list is empty.
struct SamplerTokenLists {
  const int32_t* offsets = nullptr;
  const int32_t* ids = nullptr;
};

// Device outputs. top_ids / top_logprobs (R, max_logprobs), row-major, best first; entries
// past V (only when max_logprobs > V) are id -1, logprob -inf. Null when max_logprobs == 0.
struct SamplerResults {
  int32_t* token = nullptr;       // (R,)
  float* logprob = nullptr;       // (R,) of the chosen token, under the raw logits
  int32_t* top_ids = nullptr;     // (R, max_logprobs)
  float* top_logprobs = nullptr;  // (R, max_logprobs)
};

// Bytes of workspace for R rows of V logits with penalty and ban lists of `list_tokens` ids in
// all (history + banned, all rows together): 32 bytes per chunk of 8192 logits per row (the
// split rows' partial results), then a per-row hash table that deduplicates the lists, 16 bytes
// per id. Size it once for the largest batch: a smaller R needs less.
size_t sample_workspace_bytes(int64_t R, int64_t V, int64_t list_tokens);

// Samples one token per row of logits (R, V) bf16 (any 2-byte alignment).
//   history: each row's prompt + output tokens, for the penalties; give a row a list only when
//     one of its penalties is on (an empty list turns them off, as a null history does on the
//     CPU). num_prompt_tokens (R,) int32 >= 0: how many of the row's tokens are prompt
//     (repetition uses all, presence and frequency only the rest); may be null when
//     history.offsets is null.
//   banned: ids that must not be sampled (to -inf before the penalties).
//   list_tokens: at least history.offsets[R] + banned.offsets[R] (the host knows them; the
//     workspace is checked against it). The kernel never reads or writes outside the
//     workspace: a row whose lists would not fit is sampled without them.
//   max_logprobs: N in [0, kSamplerMaxLogprobs], the top-N width of out.top_*.
//   workspace: sample_workspace_bytes(R, V, list_tokens) bytes or more (list_tokens may count
//     as 0 when both lists are null), 16-byte aligned, never null.
// Does nothing when R == 0.
void sample(const void* logits, int64_t R, int64_t V, const SamplerParams& params,
            const SamplerTokenLists& history, const int32_t* num_prompt_tokens,
            const SamplerTokenLists& banned, int64_t list_tokens, int max_logprobs,
            void* workspace, size_t workspace_bytes, const SamplerResults& out,
            cudaStream_t stream);

}  // namespace nanovllm::gpu
