#include "nanovllm/llm.h"

#include <map>

#include "engine/llm_engine.h"
#include "runtime/error.h"

namespace nanovllm {

LLM::LLM(const std::string& model, Config config) {
  config.model = model;
  engine_ = std::make_unique<LLMEngine>(std::move(config));
}

LLM::~LLM() = default;

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts, const SamplingParams& params) {
  return generate(prompts, std::vector<SamplingParams>(prompts.size(), params));
}

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts,
                                         const std::vector<SamplingParams>& params) {
  if (params.size() != prompts.size())
    throw Error("generate: " + std::to_string(prompts.size()) + " prompts but " + std::to_string(params.size()) +
                " SamplingParams (give one, or one per prompt)");
  std::vector<RequestOutput> results(prompts.size());
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) {
    try {
      const int64_t id = std::visit([&](const auto& p) { return engine_->add_request(p, params[i]); }, prompts[i]);
      index[id] = i;
    } catch (const Error& e) {
      results[i].finish_reason = "error";
      results[i].error = e.what();
      results[i].finished = true;
    }
  }
  while (engine_->has_unfinished())
    for (RequestOutput& o : engine_->step()) {
      auto it = index.find(o.request_id);
      if (it != index.end()) results[it->second] = std::move(o);
    }
  return results;
}

}  // namespace nanovllm
