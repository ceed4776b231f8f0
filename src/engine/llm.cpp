#include "nanovllm/llm.h"

#include <map>

#include "engine/llm_engine.h"
#include "runtime/error.h"

namespace nanovllm {

LLM::LLM(const std::string& model, Config config) : LLM(model, std::move(config), LoadProgressCallback{}) {}

LLM::LLM(const std::string& model, Config config, const LoadProgressCallback& load_progress) {
  config.model = model;
  engine_ = std::make_unique<LLMEngine>(std::move(config), load_progress);
}

LLM::~LLM() = default;

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts, const SamplingParams& params) {
  return generate(prompts, std::vector<SamplingParams>(prompts.size(), params));
}

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts,
                                         const std::vector<SamplingParams>& params) {
  return generate(prompts, params, StreamCallback{});
}

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params,
                                         const StreamCallback& on_delta) {
  return run(prompts, params, on_delta, std::vector<RequestOutput>(prompts.size()));
}

std::vector<RequestOutput> LLM::run(const std::vector<Prompt>& prompts, const std::vector<SamplingParams>& params,
                                    const StreamCallback& on_delta, std::vector<RequestOutput> results) {
  if (params.size() != prompts.size())
    throw Error("generate: " + std::to_string(prompts.size()) + " prompts but " + std::to_string(params.size()) +
                " SamplingParams (give one, or one per prompt)");
  std::map<int64_t, size_t> index;  // request id -> prompt, for the requests still running
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (results[i].finished) continue;  // refused before it got here (chat: the template)
    try {
      const int64_t id = std::visit([&](const auto& p) { return engine_->add_request(p, params[i]); }, prompts[i]);
      index[id] = i;
    } catch (const Error& e) {
      results[i].finish_reason = "error";
      results[i].error = e.what();
      results[i].finished = true;
    }
  }
  std::vector<RequestDelta> deltas;
  try {
    while (engine_->has_unfinished()) {
      std::vector<RequestOutput> done = on_delta ? engine_->step(deltas) : engine_->step();
      for (const RequestDelta& d : deltas)
        if (auto it = index.find(d.request_id); it != index.end()) on_delta(it->second, d);
      for (RequestOutput& o : done) {
        auto it = index.find(o.request_id);
        if (it == index.end()) continue;
        results[it->second] = std::move(o);
        index.erase(it);
      }
    }
  } catch (...) {
    // Nothing of this call may stay in the engine: abort what is left and collect the aborts.
    for (const auto& [id, i] : index) engine_->abort(id);
    while (engine_->has_unfinished()) engine_->step();
    throw;
  }
  return results;
}

std::string LLM::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  ChatTemplateOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  return engine_->apply_chat_template(list, opts);
}

std::vector<RequestOutput> LLM::chat(const std::vector<std::vector<ChatMessage>>& conversations,
                                     const SamplingParams& params, const StreamCallback& on_delta) {
  std::vector<Prompt> prompts(conversations.size());
  std::vector<RequestOutput> results(conversations.size());
  for (size_t i = 0; i < conversations.size(); ++i) {
    try {
      prompts[i] = engine_->tokenize(apply_chat_template(conversations[i], true), /*add_special_tokens=*/false);
    } catch (const Error& e) {
      results[i].finish_reason = "error";
      results[i].error = e.what();
      results[i].finished = true;
    }
  }
  return run(prompts, std::vector<SamplingParams>(prompts.size(), params), on_delta, std::move(results));
}

}  // namespace nanovllm
