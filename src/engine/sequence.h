// One request as the engine tracks it: its tokens, how far the model has computed them, its
// KV-cache blocks and how it samples. Owned by the engine; the scheduler and block manager
// work on pointers into the engine's table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nanovllm/outputs.h"
#include "nanovllm/sampling_params.h"

namespace nanovllm {

enum class SequenceStatus { Waiting, Running, Finished };

struct Sequence {
  int64_t id = 0;
  SequenceStatus status = SequenceStatus::Waiting;
  std::vector<int32_t> tokens;      // prompt followed by generated tokens
  int num_prompt_tokens = 0;
  // Tokens whose K/V are in the cache (computed by the model, or found in the prefix cache).
  int num_computed_tokens = 0;
  int num_cached_tokens = 0;        // of the prompt, from the prefix cache at first admission
  std::vector<int32_t> block_table; // cache blocks holding tokens [i*bs, (i+1)*bs)
  SamplingParams params;
  uint64_t rng_seed = 0;            // the request's seed (given, or drawn at admission)
  int64_t arrival = 0;              // admission order: FCFS, and "newest" for preemption
  int num_preemptions = 0;
  // Asynchronous scheduling (docs/engine.md): the last token was sampled by a step whose results
  // the host has not collected yet. tokens.back() is then a placeholder (kPendingToken) and the
  // value sits on the device, in row `pending_row` of that step's sampler output.
  bool pending = false;
  int pending_row = -1;
  static constexpr int32_t kPendingToken = -1;

  // Output state.
  std::vector<TokenLogprobs> logprobs;
  std::string text;                 // detokenized output so far
  size_t text_emitted = 0;          // text held back: may still turn into a stop string
  std::string finish_reason;

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  bool is_finished() const { return status == SequenceStatus::Finished; }
  // Tokens still to run through the model before the next sample.
  int num_uncomputed() const { return num_tokens() - num_computed_tokens; }
  int32_t last_token() const { return tokens.back(); }
  // Whether its tokens (a pending one included) reach max_tokens or max_model_len: the
  // engine stops it there, whatever the last token is.
  bool reached_length(int max_model_len) const {
    return num_output_tokens() >= params.max_tokens || num_tokens() >= max_model_len;
  }
};

}  // namespace nanovllm
