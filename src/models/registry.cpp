#include <map>
#include <mutex>

#include "loader/checkpoint.h"
#include "models/model.h"
#include "runtime/error.h"

namespace nanovllm {

std::unique_ptr<CausalLM> make_qwen3(const ModelConfig&, Backend&);
std::unique_ptr<CausalLM> make_llama(const ModelConfig&, Backend&);
std::unique_ptr<CausalLM> make_qwen2(const ModelConfig&, Backend&);
std::unique_ptr<CausalLM> make_mixtral(const ModelConfig&, Backend&);
std::unique_ptr<CausalLM> make_qwen3_moe(const ModelConfig&, Backend&);

namespace {
struct Registry {
  std::mutex mu;
  std::map<std::string, ModelFactory> factories;
  // model_type -> architecture, for configs without an architectures list.
  std::map<std::string, std::string> by_model_type;
};

Registry& registry() {
  static Registry* r = [] {
    auto* r = new Registry();
    r->factories["Qwen3ForCausalLM"] = make_qwen3;  // the built-in architectures
    r->by_model_type["qwen3"] = "Qwen3ForCausalLM";
    r->factories["LlamaForCausalLM"] = make_llama;
    r->by_model_type["llama"] = "LlamaForCausalLM";
    r->factories["Qwen2ForCausalLM"] = make_qwen2;
    r->by_model_type["qwen2"] = "Qwen2ForCausalLM";
    // Mistral's decoder is Llama's; its sliding window is a config rule (usable_positions).
    r->factories["MistralForCausalLM"] = make_llama;
    r->by_model_type["mistral"] = "MistralForCausalLM";
    r->factories["MixtralForCausalLM"] = make_mixtral;
    r->by_model_type["mixtral"] = "MixtralForCausalLM";
    r->factories["Qwen3MoeForCausalLM"] = make_qwen3_moe;
    r->by_model_type["qwen3_moe"] = "Qwen3MoeForCausalLM";
    return r;
  }();
  return *r;
}
}  // namespace

void register_architecture(const std::string& name, ModelFactory factory) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  r.factories[name] = std::move(factory);
}

std::vector<std::string> registered_architectures() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.factories) names.push_back(name);
  return names;
}

std::unique_ptr<CausalLM> create_model(const ModelConfig& config, Backend& backend) {
  auto& r = registry();
  ModelFactory factory;
  std::string arch = config.architecture;
  {
    std::lock_guard lock(r.mu);
    if (arch.empty() && r.by_model_type.count(config.model_type)) arch = r.by_model_type[config.model_type];
    if (auto it = r.factories.find(arch); it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& n : registered_architectures()) known += (known.empty() ? "" : ", ") + n;
    throw Error(config.path.string() + ": architecture '" +
                (arch.empty() ? "(none given, model_type '" + config.model_type + "')" : arch) +
                "' is not supported (known: " + known + ")");
  }
  return factory(config, backend);
}

std::unique_ptr<CausalLM> load_model(const std::filesystem::path& model_dir, Backend& backend,
                                     const ParamRegistry::Progress& progress) {
  ModelConfig config = load_model_config(model_dir);
  auto model = create_model(config, backend);
  Checkpoint ckpt = open_checkpoint(model_dir);
  model->params().load(ckpt.tensors, backend, model_dir.string() + " (" + ckpt.format + ")", progress);
  return model;
}

}  // namespace nanovllm
