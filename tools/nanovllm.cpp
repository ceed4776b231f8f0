// The `nanovllm` command. Until the engine exists it offers:
//   predict   the next-token prediction of a model for a list of token ids
//   inspect   a model folder's config, checkpoint and sizes
//   load      time loading a model's weights (optionally from a cold page cache)
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "engine/llm_engine.h"
#include "engine/prompt_logits.h"
#include "nanovllm/llm.h"
#include "loader/checkpoint.h"
#include "loader/mapped_file.h"
#include "models/model.h"
#include "runtime/error.h"

using namespace nanovllm;
namespace fs = std::filesystem;

namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    long v = 0;
    try { v = std::stol(item, &used); } catch (...) { used = 0; }
    if (used != item.size()) throw Error("--tokens: '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int predict(const std::string& model_dir, const std::string& tokens, int top,
            const std::string& logits_out) {
  auto backend = make_cpu_backend();
  auto model = load_model(model_dir, *backend);
  const auto ids = parse_ids(tokens);
  const PromptLogits out = prompt_logits(*model, *backend, {ids});
  const int64_t V = out.vocab_size;
  if (!logits_out.empty()) {  // every position's logits, raw float32 (len, vocab), for comparisons
    FILE* f = std::fopen(logits_out.c_str(), "wb");
    if (!f || std::fwrite(out.logits[0].data(), sizeof(float), out.logits[0].size(), f) != out.logits[0].size())
      throw Error(logits_out + ": cannot write");
    std::fclose(f);
  }
  const float* last = out.logits[0].data() + (ids.size() - 1) * V;
  // log-softmax of the last position, then the top entries.
  const float mx = *std::max_element(last, last + V);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(last[i] - mx));
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  top = std::min<int>(top, static_cast<int>(V));
  std::partial_sort(order.begin(), order.begin() + top, order.end(),
                    [&](int a, int b) { return last[a] > last[b]; });
  std::printf("model: %s (%s)\nprompt: %zu tokens\nnext token: %d\n", model_dir.c_str(),
              model->config().architecture.c_str(), ids.size(), order[0]);
  for (int i = 0; i < top; ++i)
    std::printf("  #%d  id %-8d logit %9.4f  p %.4f\n", i + 1, order[i], last[order[i]],
                std::exp(static_cast<double>(last[order[i]] - mx)) / z);
  return 0;
}

int generate(const std::string& model_dir, const std::string& prompt, const std::string& tokens,
             const SamplingParams& params) {
  LLM llm(model_dir);
  Prompt p = tokens.empty() ? Prompt(prompt) : Prompt(parse_ids(tokens));
  const auto start = std::chrono::steady_clock::now();
  const RequestOutput out = llm.generate({p}, params)[0];
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (out.finish_reason == "error") throw Error(out.error);
  if (llm.engine().has_tokenizer()) std::printf("%s\n", out.text.c_str());
  std::string ids;
  for (int32_t t : out.token_ids) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  std::fprintf(stderr, "[%zu tokens: %s] finish: %s, %.3f s, %.1f tok/s\n", out.token_ids.size(), ids.c_str(),
               out.finish_reason.c_str(), secs, out.token_ids.size() / secs);
  return 0;
}

int inspect(const std::string& model_dir, bool list) {
  const ModelConfig c = load_model_config(model_dir);
  const GenerationConfig g = load_generation_config(model_dir);
  const Checkpoint ckpt = open_checkpoint(model_dir);
  int64_t params = 0, bytes = 0;
  for (const auto& [name, v] : ckpt.tensors) params += v.numel(), bytes += static_cast<int64_t>(v.nbytes);
  std::printf("architecture        %s (model_type %s)\n",
              c.architecture.empty() ? "(not given)" : c.architecture.c_str(), c.model_type.c_str());
  std::printf("layers / hidden     %d / %d, intermediate %d, vocab %d\n", c.num_hidden_layers,
              c.hidden_size, c.intermediate_size, c.vocab_size);
  std::printf("heads               %d query, %d kv, head_dim %d\n", c.num_attention_heads,
              c.num_key_value_heads, c.head_dim);
  std::printf("rope_theta / eps    %g / %g, max positions %d\n", c.rope_theta, c.rms_norm_eps,
              c.max_position_embeddings);
  std::printf("dtype               %s, tied embeddings: %s\n", std::string(dtype_name(c.torch_dtype)).c_str(),
              c.tie_word_embeddings ? "yes" : "no");
  std::printf("checkpoint          %s, %zu tensors, %.3f M parameters, %.1f MB\n", ckpt.format.c_str(),
              ckpt.tensors.size(), params / 1e6, bytes / 1e6);
  const int64_t kv = int64_t{2} * c.num_hidden_layers * c.num_key_value_heads * c.head_dim;
  std::printf("KV cache per token  %lld bytes in bf16, %lld in f32\n", static_cast<long long>(kv * 2),
              static_cast<long long>(kv * 4));
  if (g.present) {
    std::string eos;
    for (int e : g.eos_token_ids) eos += (eos.empty() ? "" : ",") + std::to_string(e);
    std::printf("generation config   eos [%s]\n", eos.c_str());
  }
  if (list)
    for (const auto& [name, v] : ckpt.tensors)
      std::printf("  %-60s %-5s %s\n", name.c_str(), std::string(dtype_name(v.dtype)).c_str(),
                  shape_string(v.shape).c_str());
  return 0;
}

int load_timing(const std::string& model_dir, bool cold) {
  using clock = std::chrono::steady_clock;
  if (cold) {  // drop every weight file from the page cache so that the load reads the disk
    for (const auto& e : fs::directory_iterator(model_dir))
      if (e.is_regular_file()) MappedFile::open(e.path())->evict_from_page_cache();
  }
  const auto t0 = clock::now();
  const ModelConfig c = load_model_config(model_dir);
  auto backend = make_cpu_backend();
  auto model = create_model(c, *backend);
  const auto t1 = clock::now();
  Checkpoint ckpt = open_checkpoint(model_dir);
  int64_t bytes = 0;
  for (const auto& [n, v] : ckpt.tensors) bytes += static_cast<int64_t>(v.nbytes);
  const auto t2 = clock::now();
  model->params().load(ckpt.tensors, *backend, model_dir);
  const auto t3 = clock::now();
  auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf("load %s (%s, %s page cache): %.1f MB of weights\n", model_dir.c_str(), ckpt.format.c_str(),
              cold ? "cold" : "warm", bytes / 1e6);
  std::printf("  allocate model %.3f s, open+validate %.3f s, read+convert to f32 %.3f s\n", s(t0, t1),
              s(t1, t2), s(t2, t3));
  std::printf("  total %.3f s, %.2f GB/s of checkpoint bytes\n", s(t0, t3), bytes / 1e9 / s(t0, t3));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nanovllm: a readable, fast LLM inference engine"};
  app.require_subcommand(1);
  std::string model_dir, tokens;
  int top = 5;
  bool list = false, cold = false;

  auto* p = app.add_subcommand("predict", "Print a model's next-token prediction for token ids");
  p->add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  p->add_option("-t,--tokens", tokens, "Comma-separated prompt token ids, e.g. 1,2,3")->required();
  p->add_option("--top", top, "How many candidates to show")->check(CLI::PositiveNumber);
  std::string logits_out;
  p->add_option("--logits-out", logits_out, "Write every position's logits (float32, len x vocab) here");

  auto* g = app.add_subcommand("generate", "Generate a continuation of a prompt (text, or token ids)");
  std::string prompt;
  SamplingParams sp;
  sp.max_tokens = 32;
  g->add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  auto* text_opt = g->add_option("-p,--prompt", prompt, "Prompt text (needs the model's tokenizer)");
  g->add_option("-t,--tokens", tokens, "Prompt as comma-separated token ids")->excludes(text_opt);
  g->add_option("-n,--max-tokens", sp.max_tokens, "Tokens to generate");
  g->add_option("--temperature", sp.temperature, "0 is greedy");
  g->add_option("--top-p", sp.top_p, "Nucleus sampling mass");
  g->add_option("--top-k", sp.top_k, "Keep the k most likely tokens (-1: all)");
  g->add_option("--seed", sp.seed, "Sampling seed");
  g->add_flag("--ignore-eos", sp.ignore_eos, "Keep going past end-of-sequence tokens");

  auto* i = app.add_subcommand("inspect", "Show a model folder's config, checkpoint and sizes");
  i->add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  i->add_flag("--tensors", list, "List every tensor");

  auto* l = app.add_subcommand("load", "Time loading a model's weights into the CPU backend");
  l->add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  l->add_flag("--cold", cold, "Evict the files from the page cache first");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*p) return predict(model_dir, tokens, top, logits_out);
    if (*i) return inspect(model_dir, list);
    if (*g) {
      if (prompt.empty() && tokens.empty()) throw Error("generate: give --prompt or --tokens");
      return generate(model_dir, prompt, tokens, sp);
    }
    if (*l) return load_timing(model_dir, cold);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nanovllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
