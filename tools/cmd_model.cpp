// `nanovllm inspect`, `predict` and `load`: a model folder's contents, its next-token
// prediction, and how long its weights take to load.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>

#include "cli_common.h"
#include "commands.h"
#include "engine/chat_prompt.h"
#include "engine/prompt_logits.h"
#include "loader/checkpoint.h"
#include "loader/hf_cache.h"
#include "loader/mapped_file.h"
#include "models/model.h"
#include "runtime/error.h"
#include "tokenizer/tokenizer.h"

namespace nanovllm::cli {
namespace {

namespace fs = std::filesystem;

void run_predict(const std::string& model, const std::string& tokens, int top, const std::string& logits_out) {
  const fs::path dir = resolve_model_path(model);
  auto backend = make_cpu_backend();
  auto m = load_model(dir, *backend);
  const auto ids = parse_ids(tokens);
  if (ids.empty()) throw Error("--tokens: no token ids");
  const PromptLogits out = prompt_logits(*m, *backend, {ids});
  const int64_t V = out.vocab_size;
  if (!logits_out.empty()) {  // every position's logits, raw float32 (len, vocab), for comparisons
    FILE* f = std::fopen(logits_out.c_str(), "wb");
    const bool ok = f && std::fwrite(out.logits[0].data(), sizeof(float), out.logits[0].size(), f) == out.logits[0].size();
    if (f) std::fclose(f);
    if (!ok) throw Error(logits_out + ": cannot write");
  }
  const float* last = out.logits[0].data() + (ids.size() - 1) * V;
  // log-softmax of the last position, then the top entries.
  const float mx = *std::max_element(last, last + V);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(last[i] - mx));
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  top = std::min<int>(top, static_cast<int>(V));
  std::partial_sort(order.begin(), order.begin() + top, order.end(), [&](int a, int b) { return last[a] > last[b]; });
  std::printf("model: %s (%s)\nprompt: %zu tokens\nnext token: %d\n", dir.c_str(), m->config().architecture.c_str(),
              ids.size(), order[0]);
  for (int i = 0; i < top; ++i)
    std::printf("  #%d  id %-8d logit %9.4f  p %.4f\n", i + 1, order[i], last[order[i]],
                std::exp(static_cast<double>(last[order[i]] - mx)) / z);
}

std::string list_ints(const std::vector<int>& v) {
  std::string s;
  for (int e : v) s += (s.empty() ? "" : ",") + std::to_string(e);
  return s;
}

void run_inspect(const std::string& model, bool list) {
  const fs::path dir = resolve_model_path(model);
  const ModelConfig c = load_model_config(dir);
  std::printf("model               %s\n", dir.c_str());
  std::printf("architecture        %s (model_type %s)\n",
              c.architecture.empty() ? "(not given)" : c.architecture.c_str(), c.model_type.c_str());
  std::printf("layers / hidden     %d / %d, intermediate %d, vocab %d\n", c.num_hidden_layers, c.hidden_size,
              c.intermediate_size, c.vocab_size);
  std::printf("heads               %d query, %d kv, head_dim %d\n", c.num_attention_heads, c.num_key_value_heads,
              c.head_dim);
  std::printf("rope_theta / eps    %g / %g, max positions %d\n", c.rope_theta, c.rms_norm_eps,
              c.max_position_embeddings);
  std::printf("dtype               %s, tied embeddings: %s\n", std::string(dtype_name(c.torch_dtype)).c_str(),
              c.tie_word_embeddings ? "yes" : "no");
  if (c.num_experts > 0) {
    int sparse = 0;
    for (int l = 0; l < c.num_hidden_layers; ++l) sparse += is_moe_layer(c, l);
    std::printf("experts             %d, %d per token, %d wide, weights %s; in %d of %d layers (CPU backend only)\n",
                c.num_experts, c.experts_per_token, c.moe_intermediate_size,
                c.norm_topk_prob ? "renormalised" : "as routed",
                sparse, c.num_hidden_layers);
  }
  if (c.sliding_window > 0)
    std::printf("sliding window      %d: sequences are capped at %d (attention is full within it)\n",
                c.sliding_window, usable_positions(c));

  std::unique_ptr<Checkpoint> ckpt;
  try {
    ckpt = std::make_unique<Checkpoint>(open_checkpoint(dir));
  } catch (const Error& e) {
    std::printf("checkpoint          none usable: %s\n", e.what());
  }
  if (ckpt) {
    int64_t params = 0, bytes = 0;
    std::map<std::string, int64_t> by_dtype;  // dtype -> parameters
    for (const auto& [name, v] : ckpt->tensors) {
      params += v.numel();
      bytes += static_cast<int64_t>(v.nbytes);
      by_dtype[std::string(dtype_name(v.dtype))] += v.numel();
    }
    std::string dtypes;
    for (const auto& [d, n] : by_dtype) dtypes += (dtypes.empty() ? "" : ", ") + d + " " + std::to_string(n);
    std::printf("parameters          %.3f M in %zu tensors (%s)\n", params / 1e6, ckpt->tensors.size(), dtypes.c_str());
    std::printf("checkpoint          %s, %s\n", ckpt->format.c_str(), human_bytes(static_cast<double>(bytes)).c_str());
  }
  // K and V, every layer, one token: what a token of context costs in the paged cache.
  const int64_t kv = int64_t{2} * c.num_hidden_layers * c.num_key_value_heads * c.head_dim;
  std::printf("KV cache per token  %lld bytes in bf16 (CUDA), %lld in f32 (CPU); a 256-token block %s / %s\n",
              static_cast<long long>(kv * 2), static_cast<long long>(kv * 4),
              human_bytes(static_cast<double>(kv * 2 * 256)).c_str(), human_bytes(static_cast<double>(kv * 4 * 256)).c_str());
  const int max_len = std::min(usable_positions(c), Config{}.max_model_len);
  std::printf("max_model_len       %d by default (--max-model-len up to %d): %s of KV in bf16\n", max_len,
              usable_positions(c), human_bytes(static_cast<double>(kv * 2 * max_len)).c_str());

  if (fs::exists(dir / "tokenizer.json")) {
    std::string tpl = "no chat template";
    try {
      if (ModelChatTemplate::from_folder(dir)) tpl = "a chat template";
    } catch (const Error& e) {
      tpl = std::string("a chat template that cannot be used: ") + e.what();
    }
    const auto tok = Tokenizer::from_folder(dir);
    std::printf("tokenizer           tokenizer.json, %d ids; %s\n", tok->vocab_size(), tpl.c_str());
  } else {
    std::printf("tokenizer           none (prompts as token ids only)\n");
  }
  const GenerationConfig g = load_generation_config(dir);
  if (g.present) {
    std::string s = "eos [" + list_ints(g.eos_token_ids) + "]";
    char buf[64];
    if (g.temperature) std::snprintf(buf, sizeof buf, ", temperature %g", *g.temperature), s += buf;
    if (g.top_p) std::snprintf(buf, sizeof buf, ", top_p %g", *g.top_p), s += buf;
    if (g.top_k) s += ", top_k " + std::to_string(*g.top_k);
    if (g.min_p) std::snprintf(buf, sizeof buf, ", min_p %g", *g.min_p), s += buf;
    if (g.repetition_penalty) std::snprintf(buf, sizeof buf, ", repetition_penalty %g", *g.repetition_penalty), s += buf;
    std::printf("generation config   %s\n", s.c_str());
  }
  if (list && ckpt)
    for (const auto& [name, v] : ckpt->tensors)
      std::printf("  %-60s %-5s %s\n", name.c_str(), std::string(dtype_name(v.dtype)).c_str(),
                  shape_string(v.shape).c_str());
}

void run_load(const std::string& model, bool cold) {
  using clock = std::chrono::steady_clock;
  const fs::path dir = resolve_model_path(model);
  if (cold) {  // drop every weight file from the page cache so that the load reads the disk
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) MappedFile::open(e.path())->evict_from_page_cache();
  }
  const auto t0 = clock::now();
  const ModelConfig c = load_model_config(dir);
  auto backend = make_cpu_backend();
  auto m = create_model(c, *backend);
  const auto t1 = clock::now();
  Checkpoint ckpt = open_checkpoint(dir);
  int64_t bytes = 0;
  for (const auto& [n, v] : ckpt.tensors) bytes += static_cast<int64_t>(v.nbytes);
  const auto t2 = clock::now();
  ProgressBar bar("converting weights");
  m->params().load(ckpt.tensors, *backend, dir.string(), [&](int64_t done, int64_t all) {
    bar.update(all > 0 ? static_cast<double>(done) / all : 1.0, human_bytes(done) + " / " + human_bytes(all));
  });
  bar.finish("converted " + human_bytes(static_cast<double>(bytes)));
  const auto t3 = clock::now();
  auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf("load %s (%s, %s page cache): %.1f MB of weights\n", dir.c_str(), ckpt.format.c_str(),
              cold ? "cold" : "warm", bytes / 1e6);
  std::printf("  allocate model %.3f s, open+validate %.3f s, read+convert to f32 %.3f s\n", s(t0, t1), s(t1, t2),
              s(t2, t3));
  std::printf("  total %.3f s, %.2f GB/s of checkpoint bytes\n", s(t0, t3), bytes / 1e9 / s(t0, t3));
}

CLI::Option* add_model(CLI::App* app, std::string& model) {
  model = builtin_model();
  return app->add_option("-m,--model", model,
                         "Model folder, or Hugging Face id already in the local HF cache (default: the built-in "
                         "nanovllm-tiny)")
      ->type_name("MODEL");
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  struct Opts {
    std::string model;
    bool tensors = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* i = app.add_subcommand("inspect", "Show a model's config, parameters, dtype, KV-cache size and tokenizer");
  add_model(i, o->model);
  i->add_flag("--tensors", o->tensors, "Also list every checkpoint tensor with its dtype and shape");
  i->footer("Example:\n  nanovllm inspect -m Qwen/Qwen3-0.6B --tensors");
  i->callback([o] { run_inspect(o->model, o->tensors); });
}

void add_predict_command(CLI::App& app) {
  struct Opts {
    std::string model, tokens, logits_out;
    int top = 5;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* p = app.add_subcommand("predict", "Print a model's next-token prediction for token ids (CPU reference)");
  add_model(p, o->model);
  p->add_option("-t,--tokens", o->tokens, "Prompt as comma-separated token ids, e.g. 1,17,42")->required()->type_name("IDS");
  p->add_option("--top", o->top, "How many candidates to show")->check(CLI::PositiveNumber)->capture_default_str();
  p->add_option("--logits-out", o->logits_out, "Write every position's logits here (raw float32, len x vocab)")
      ->type_name("FILE");
  p->footer("Example:\n  nanovllm predict -m ./my-model --tokens 1,17,42 --top 3");
  p->callback([o] { run_predict(o->model, o->tokens, o->top, o->logits_out); });
}

void add_load_command(CLI::App& app) {
  struct Opts {
    std::string model;
    bool cold = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* l = app.add_subcommand("load", "Time loading a model's weights into the CPU backend");
  add_model(l, o->model);
  l->add_flag("--cold", o->cold, "Evict the model's files from the page cache first (reads the disk)");
  l->footer("Example:\n  nanovllm load -m ./my-model --cold");
  l->callback([o] { run_load(o->model, o->cold); });
}

}  // namespace nanovllm::cli
