// What the `nanovllm` subcommands share: options that several take, progress bars on stderr,
// and loading a model with one.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nanovllm/config.h"
#include "nanovllm/llm.h"
#include "nanovllm/sampling_params.h"

namespace nanovllm::cli {

// The built-in model's folder: $NANOVLLM_BUILTIN_MODEL, else models/nanovllm-tiny of the source
// tree this binary was built from. The default of every --model.
std::string builtin_model();

bool stdin_is_tty();
bool stdout_is_tty();
bool stderr_is_tty();

// "1,17,42" -> ids; Error naming the item that is not an id.
std::vector<int32_t> parse_ids(const std::string& s, const std::string& option = "--tokens");
// All of standard input.
std::string read_stdin();
// 1234567 -> "1.2 MB".
std::string human_bytes(double bytes);

// A one-line progress bar on stderr, redrawn at most ten times a second, when stderr is a
// terminal; otherwise silent until finish(), which prints the summary line (on a terminal it
// replaces the bar).
class ProgressBar {
 public:
  explicit ProgressBar(std::string label, bool draw = stderr_is_tty());
  ~ProgressBar();
  // fraction in [0, 1], or < 0 for no bar (a count only); detail follows the bar.
  void update(double fraction, const std::string& detail);
  void finish(const std::string& summary);
  double seconds() const;

 private:
  void clear();
  std::string label_;
  bool draw_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// --model, --backend and --max-model-len.
struct EngineOptions {
  std::string model;
  std::string backend = "auto";
  int max_model_len = 0;  // 0: the engine's default
  void add_to(CLI::App* app);
  Config config() const;
};

// Sampling options. Those not given on the command line take the model's generation_config.json
// values where it has them (as vLLM does), else SamplingParams' defaults.
struct SamplingOptions {
  SamplingParams params;
  std::vector<CLI::Option*> from_model;  // temperature, top-p, top-k, min-p, repetition-penalty
  CLI::Option *temperature = nullptr, *top_p = nullptr, *top_k = nullptr, *min_p = nullptr,
              *repetition_penalty = nullptr;
  void add_to(CLI::App* app, int default_max_tokens);
  // params with the model's defaults filled in.
  SamplingParams resolve(const std::string& model_dir) const;
};

// The model, with a progress bar while its weights load.
std::unique_ptr<LLM> load_llm(const EngineOptions& opts);

}  // namespace nanovllm::cli
