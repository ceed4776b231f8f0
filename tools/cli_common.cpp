#include "cli_common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>

#include "engine/llm_engine.h"
#include "loader/model_config.h"
#include "runtime/error.h"

namespace nanovllm::cli {

bool stdin_is_tty() { return isatty(STDIN_FILENO) != 0; }
bool stdout_is_tty() { return isatty(STDOUT_FILENO) != 0; }
bool stderr_is_tty() { return isatty(STDERR_FILENO) != 0; }

std::vector<int32_t> parse_ids(const std::string& s, const std::string& option) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a == std::string::npos) continue;
    item = item.substr(a, b - a + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) throw Error(option + ": '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

std::string read_stdin() {
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return s;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) bytes /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

ProgressBar::ProgressBar(std::string label, bool draw)
    : label_(std::move(label)), draw_(draw), start_(std::chrono::steady_clock::now()), last_() {}

ProgressBar::~ProgressBar() { clear(); }

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(double fraction, const std::string& detail) {
  if (!draw_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100) && fraction < 1) return;
  last_ = now;
  std::string line = "\r\033[K" + label_ + " ";
  if (fraction >= 0) {
    const int width = 24, filled = static_cast<int>(std::min(1.0, fraction) * width + 0.5);
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%% ", std::min(1.0, fraction) * 100);
    line += "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " + pct;
  }
  line += detail;
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (!drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

void ProgressBar::finish(const std::string& summary) {
  clear();
  std::fprintf(stderr, "%s\n", summary.c_str());
  draw_ = false;
}

// The built-in model: $NANOVLLM_BUILTIN_MODEL, else models/nanovllm-tiny of the source tree this
// binary was built from.
std::string builtin_model() {
  if (const char* env = std::getenv("NANOVLLM_BUILTIN_MODEL"); env && *env) return env;
  return NANOVLLM_BUILTIN_MODEL_DIR;
}

void EngineOptions::add_to(CLI::App* app) {
  model = builtin_model();
  app->add_option("-m,--model", model,
                  "Model folder, or Hugging Face id already in the local HF cache (default: the built-in "
                  "nanovllm-tiny, a 7M-parameter Qwen3 trained on Python source)")
      ->type_name("MODEL");
  app->add_option("--backend", backend, "Where to run: auto (the default: CUDA when there is a GPU), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}).description(""))
      ->type_name("auto|cpu|cuda");
  app->add_option("--max-model-len", max_model_len, "Most tokens of prompt + output (default: the model's limit, up to 4096)")
      ->check(CLI::PositiveNumber)
      ->type_name("N");
}

Config EngineOptions::config() const {
  Config c;
  c.backend = backend;
  if (max_model_len > 0) c.max_model_len = max_model_len;
  return c;
}

void SamplingOptions::add_to(CLI::App* app, int default_max_tokens) {
  params.max_tokens = default_max_tokens;
  app->add_option("-n,--max-tokens", params.max_tokens, "Most tokens to generate")->capture_default_str()->type_name("N");
  temperature = app->add_option("--temperature", params.temperature,
                                "Sampling temperature, 0 is greedy (default: the model's, else 1)")->type_name("T");
  top_p = app->add_option("--top-p", params.top_p, "Keep the most likely tokens up to this mass (default: the model's, else 1)")
              ->type_name("P");
  top_k = app->add_option("--top-k", params.top_k, "Keep the k most likely tokens, -1 for all (default: the model's, else -1)")
              ->type_name("K");
  min_p = app->add_option("--min-p", params.min_p, "Drop tokens below this fraction of the top one's probability (default: the model's, else 0)")
              ->type_name("P");
  repetition_penalty = app->add_option("--repetition-penalty", params.repetition_penalty,
                                       "Penalty for tokens already seen, 1 is off (default: the model's, else 1)")
                           ->type_name("R");
  app->add_option("--seed", params.seed, "Sampling seed: the same seed gives the same output")->type_name("N");
  app->add_option("--stop", params.stop, "Stop at this text (cut from the output); may be repeated")->type_name("TEXT");
  app->add_flag("--ignore-eos", params.ignore_eos, "Keep generating past end-of-sequence tokens");
}

SamplingParams SamplingOptions::resolve(const std::string& model_dir) const {
  SamplingParams p = params;
  const GenerationConfig g = load_generation_config(model_dir);
  if (g.temperature && !temperature->count()) p.temperature = *g.temperature;
  if (g.top_p && !top_p->count()) p.top_p = *g.top_p;
  if (g.top_k && !top_k->count()) p.top_k = *g.top_k == 0 ? -1 : *g.top_k;  // HF's 0 is "off"
  if (g.min_p && !min_p->count()) p.min_p = *g.min_p;
  if (g.repetition_penalty && !repetition_penalty->count()) p.repetition_penalty = *g.repetition_penalty;
  p.validate();
  return p;
}

std::unique_ptr<LLM> load_llm(const EngineOptions& opts) {
  ProgressBar bar("loading weights");
  int64_t total = 0;
  auto llm = std::make_unique<LLM>(opts.model, opts.config(), [&](int64_t done, int64_t all) {
    total = all;
    bar.update(all > 0 ? static_cast<double>(done) / all : 1.0, human_bytes(done) + " / " + human_bytes(all));
  });
  char line[512];
  std::snprintf(line, sizeof line, "loaded %s: %s of weights in %.2f s (%s backend)", opts.model.c_str(),
                human_bytes(total).c_str(), bar.seconds(), llm->engine().backend_name().c_str());
  bar.finish(line);
  return llm;
}

}  // namespace nanovllm::cli
