// The C++ API, after Nano-vLLM's:  LLM llm(path, config); llm.generate(prompts, params).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "nanovllm/config.h"
#include "nanovllm/outputs.h"
#include "nanovllm/sampling_params.h"

namespace nanovllm {

class LLMEngine;

// A prompt is text (needs the model's tokenizer) or token ids.
using Prompt = std::variant<std::string, std::vector<int32_t>>;

class LLM {
 public:
  // `config.model` is replaced by `model`. Throws nanovllm::Error if the model or the
  // configuration cannot run.
  explicit LLM(const std::string& model, Config config = {});
  ~LLM();
  LLM(const LLM&) = delete;
  LLM& operator=(const LLM&) = delete;

  // Results in input order. A request that cannot run (an empty or over-long prompt, invalid
  // sampling values) gets finish_reason "error" and its message; the others still run.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const SamplingParams& params);
  // One SamplingParams per prompt.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params);

  LLMEngine& engine() { return *engine_; }

 private:
  std::unique_ptr<LLMEngine> engine_;
};

}  // namespace nanovllm
