// The engine: requests in, tokens and text out, one step at a time. It owns the backend, the
// model, the KV cache (through the runner), the block manager, the scheduler and every live
// sequence. Single-threaded: one thread calls add_request/step/abort.
#pragma once

#include <cstdint>
#include <functional>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/chat_prompt.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "engine/text_codec.h"
#include "nanovllm/config.h"
#include "nanovllm/outputs.h"
#include "nanovllm/sampling_params.h"

namespace nanovllm {

struct EngineStats {
  uint64_t steps = 0;
  uint64_t prefix_cache_hits = 0;    // prompt blocks served from the cache
  uint64_t prefix_cache_misses = 0;  // full prompt blocks computed
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0, cached_prompt_tokens = 0, generated_tokens = 0;
};

// The shape of one step, for benchmarks (the roofline accounting of src/bench/roofline.h).
struct StepInfo {
  struct Seq {
    int num_query_tokens = 0;  // tokens run through the model in the step
    int context_len = 0;       // keys the sequence has after the step (cached + new)
    bool samples = false;      // whether it sampled a token (its logits were computed)
  };
  std::vector<Seq> seqs;       // in schedule order
  double seconds = 0;          // wall time of the step: scheduling, model, sampling, appending
};

class LLMEngine {
 public:
  // `load_progress` (optional) follows the weight loading: (bytes done, bytes in all).
  explicit LLMEngine(Config config, const ParamRegistry::Progress& load_progress = {});
  // The same on a backend the caller made (a custom or an instrumented one): config.backend is
  // not used.
  LLMEngine(Config config, std::unique_ptr<Backend> backend, const ParamRegistry::Progress& load_progress = {});
  ~LLMEngine();

  // Validates the request (Error naming the problem if it cannot run) and queues it.
  int64_t add_request(std::vector<int32_t> prompt, const SamplingParams& params);
  int64_t add_request(const std::string& prompt, const SamplingParams& params);
  // Runs one scheduled step; returns the requests that finished in it (and aborted ones). With
  // asynchronous scheduling (Config::async_scheduling) a step queues the next forward pass and
  // then handles the tokens of the one before it: what it returns is one step behind.
  std::vector<RequestOutput> step();
  // The same, and fills `deltas` (cleared first) with what the step added to each request that
  // sampled in it, and with each request it reports finished (aborted ones too): streaming.
  std::vector<RequestOutput> step(std::vector<RequestDelta>& deltas);
  // Stops a request and frees its blocks; its output (finish_reason "abort") comes from the
  // next step(). Unknown or finished ids are ignored.
  void abort(int64_t request_id);
  bool has_unfinished() const;

  const Config& config() const { return config_; }
  std::string backend_name() const { return backend_->name(); }  // the one "auto" chose
  const ModelConfig& model_config() const { return model_->config(); }
  bool has_tokenizer() const { return codec_ != nullptr; }
  // The model's tokenizer on its own. Error when the model has none.
  std::vector<int32_t> tokenize(const std::string& text, bool add_special_tokens = true) const;
  bool has_chat_template() const { return chat_template_ != nullptr; }
  // A conversation rendered with the model's chat template ([{"role", "content", ...}, ...]),
  // as HF's apply_chat_template(tokenize=False). The text carries its own special tokens:
  // tokenize it with add_special_tokens = false. Error when the model has no usable template.
  std::string apply_chat_template(const nlohmann::ordered_json& messages, const ChatTemplateOptions& opts = {},
                                  const nlohmann::ordered_json& tools = nullptr) const;
  EngineStats stats() const;
  int num_kv_blocks() const { return blocks_->num_blocks(); }
  int num_free_kv_blocks() const { return blocks_->num_free_blocks(); }
  const ModelRunner& runner() const { return *runner_; }
  const Backend& backend() const { return *backend_; }
  // Checks block-manager invariants against the live sequences (tests and soak runs).
  void check_invariants() const;
  // Called after every step that ran the model, with its shape (benchmarks). Empty: none.
  void set_step_observer(std::function<void(const StepInfo&)> observer) { step_observer_ = std::move(observer); }
  // The backend the engine runs on (benchmarks measure its ceilings).
  Backend& backend() { return *backend_; }

 private:
  SamplingBatch sampling_batch(const SchedulerOutput& out) const;
  // Appends a sampled token and decides whether the sequence stops.
  bool append_token(Sequence& seq, int32_t token, float logprob,
                    const std::vector<std::pair<int32_t, float>>* top);
  RequestOutput output_of(const Sequence& seq) const;
  std::vector<RequestOutput> run_step(std::vector<RequestDelta>* deltas);
  // Waits for the launched step's tokens and hands them to their sequences: appends, stops,
  // finishes (returning outputs and deltas), reports the step to the observer.
  void collect_inflight(std::vector<RequestOutput>& done, std::vector<RequestDelta>* deltas);
  // Moves a finished sequence out of the live table; it stays allocated while a launched step
  // may still name it (collect_inflight frees it).
  void retire(int64_t id);
  // The tokens and the not yet reported text of a request, advancing seq.text_emitted.
  RequestDelta delta_of(Sequence& seq, std::vector<int32_t> new_tokens, bool finished) const;

  Config config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<TextCodec> codec_;
  std::unique_ptr<ModelChatTemplate> chat_template_;
  std::string chat_template_error_;  // why the model's template cannot be used, if it cannot
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  std::map<int64_t, std::unique_ptr<Sequence>> seqs_;
  // Async scheduling: the step launched and not yet collected (at most one).
  struct InFlight {
    SchedulerOutput out;
    StepInfo info;
    std::chrono::steady_clock::time_point started;
    // A sequence it left pending samples with a penalty, which reads the token history on the
    // host: the step must be collected before the next one is planned.
    bool needs_host_tokens;
  };
  std::optional<InFlight> inflight_;
  bool async_ = false;
  std::chrono::steady_clock::time_point last_collected_{};
  std::vector<std::unique_ptr<Sequence>> retired_;  // finished, possibly named by inflight_
  std::map<int64_t, std::unique_ptr<TextStream>> streams_;
  std::vector<RequestOutput> aborted_;
  std::vector<RequestDelta> aborted_deltas_;
  std::mt19937_64 seed_rng_;
  int64_t next_id_ = 0;
  EngineStats stats_;
  std::function<void(const StepInfo&)> step_observer_;
};

}  // namespace nanovllm
