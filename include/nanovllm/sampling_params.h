// How one request is sampled and when it stops. Field names and defaults follow vLLM's
// SamplingParams (Nano-vLLM's is a subset).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nanovllm {

struct SamplingParams {
  double temperature = 1.0;         // 0 means greedy
  int top_k = -1;                   // -1: all tokens
  double top_p = 1.0;               // in (0, 1]
  double min_p = 0.0;               // in [0, 1]
  double repetition_penalty = 1.0;  // > 0; on prompt and output tokens (as transformers)
  double presence_penalty = 0.0;    // in [-2, 2]; on output tokens (as OpenAI)
  double frequency_penalty = 0.0;   // in [-2, 2]; on output tokens
  std::optional<uint64_t> seed;     // same seed, same output, whatever else is in the batch
  int max_tokens = 16;
  int min_tokens = 0;               // EOS and stop tokens are suppressed before this many
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop;    // stop strings, cut from the text
  int logprobs = 0;                 // top-N logprobs per generated token (0: none)
  bool skip_special_tokens = true;

  // Throws nanovllm::Error naming the first invalid field and its value.
  void validate() const;
  // Whether a penalty is on (sampling then reads the token history).
  bool has_penalty() const {
    return repetition_penalty != 1.0 || presence_penalty != 0.0 || frequency_penalty != 0.0;
  }
};

}  // namespace nanovllm
