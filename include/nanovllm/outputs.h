// What generation returns per request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nanovllm {

struct TokenLogprobs {
  int32_t token_id = 0;
  float logprob = 0.f;                                // of the sampled token
  std::vector<std::pair<int32_t, float>> top;         // the top-N (id, logprob), best first
};

struct RequestOutput {
  int64_t request_id = 0;
  std::string text;                  // detokenized output, stop string cut (empty without a tokenizer)
  std::vector<int32_t> token_ids;    // generated tokens only
  std::string finish_reason;         // "stop", "length", "abort" or "error"
  std::string error;                 // for finish_reason "error": why the request was refused
  int num_prompt_tokens = 0;
  int num_cached_tokens = 0;         // prompt tokens served from the prefix cache
  std::vector<TokenLogprobs> logprobs;  // one per generated token when logprobs > 0
  bool finished = false;
};

// What one engine step added to one request, for streaming (LLMEngine::step(deltas)). The
// concatenation of a request's deltas is its RequestOutput's token_ids and text. While a
// request has stop strings, text that could still begin one is held back until it cannot.
struct RequestDelta {
  int64_t request_id = 0;
  std::vector<int32_t> token_ids;  // the tokens this step generated
  std::string text;                // the text they completed
  bool finished = false;
  std::string finish_reason;       // when finished: "stop", "length" or "abort"
};

}  // namespace nanovllm
