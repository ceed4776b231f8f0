// The C++ API, after Nano-vLLM's:  LLM llm(path, config); llm.generate(prompts, params).
#pragma once

#include <cstdint>
#include <functional>
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

// One message of a conversation, for the model's chat template.
struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// Streaming: called after each engine step with the index of a prompt (in the caller's list) and
// what the step added to its request.
using StreamCallback = std::function<void(size_t index, const RequestDelta& delta)>;
// Called while the weights load with (bytes converted so far, bytes in all).
using LoadProgressCallback = std::function<void(int64_t bytes_done, int64_t bytes_total)>;

class LLM {
 public:
  // `config.model` is replaced by `model`. Throws nanovllm::Error if the model or the
  // configuration cannot run.
  explicit LLM(const std::string& model, Config config = {});
  LLM(const std::string& model, Config config, const LoadProgressCallback& load_progress);
  ~LLM();
  LLM(const LLM&) = delete;
  LLM& operator=(const LLM&) = delete;

  // Results in input order. A request that cannot run (an empty or over-long prompt, invalid
  // sampling values) gets finish_reason "error" and its message; the others still run.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const SamplingParams& params);
  // One SamplingParams per prompt.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params);
  // The same, calling `on_delta` as tokens and text come. If it throws, the outstanding requests
  // are aborted (their KV blocks freed) and the exception propagates.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params,
                                      const StreamCallback& on_delta);

  // A conversation rendered with the model's chat template into prompt text, as Hugging Face's
  // apply_chat_template(messages, tokenize=False, add_generation_prompt=...). Error when the
  // model has no chat template or the template rejects the conversation.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;
  // generate() over conversations: each is rendered with the chat template (add_generation_prompt)
  // and tokenized without adding special tokens (the template writes them). A conversation the
  // template rejects gets finish_reason "error" and the template's message.
  std::vector<RequestOutput> chat(const std::vector<std::vector<ChatMessage>>& conversations,
                                  const SamplingParams& params, const StreamCallback& on_delta = {});

  LLMEngine& engine() { return *engine_; }

 private:
  // generate() for the prompts whose results[i] is not already finished (refused early).
  std::vector<RequestOutput> run(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params,
                                 const StreamCallback& on_delta, std::vector<RequestOutput> results);

  std::unique_ptr<LLMEngine> engine_;
};

}  // namespace nanovllm
