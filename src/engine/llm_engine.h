// The engine: requests in, tokens and text out, one step at a time. It owns the backend, the
// model, the KV cache (through the runner), the block manager, the scheduler and every live
// sequence. Single-threaded: one thread calls add_request/step/abort.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/block_manager.h"
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

class LLMEngine {
 public:
  explicit LLMEngine(Config config);
  ~LLMEngine();

  // Validates the request (Error naming the problem if it cannot run) and queues it.
  int64_t add_request(std::vector<int32_t> prompt, const SamplingParams& params);
  int64_t add_request(const std::string& prompt, const SamplingParams& params);
  // Runs one scheduled step; returns the requests that finished in it (and aborted ones).
  std::vector<RequestOutput> step();
  // Stops a request and frees its blocks; its output (finish_reason "abort") comes from the
  // next step(). Unknown or finished ids are ignored.
  void abort(int64_t request_id);
  bool has_unfinished() const;

  const Config& config() const { return config_; }
  const ModelConfig& model_config() const { return model_->config(); }
  bool has_tokenizer() const { return codec_ != nullptr; }
  EngineStats stats() const;
  int num_kv_blocks() const { return blocks_->num_blocks(); }
  int num_free_kv_blocks() const { return blocks_->num_free_blocks(); }
  // Checks block-manager invariants against the live sequences (tests and soak runs).
  void check_invariants() const;

 private:
  SamplingBatch sampling_batch(const SchedulerOutput& out) const;
  // Appends a sampled token and decides whether the sequence stops.
  bool append_token(Sequence& seq, int32_t token, float logprob,
                    const std::vector<std::pair<int32_t, float>>* top);
  RequestOutput output_of(const Sequence& seq) const;

  Config config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<TextCodec> codec_;
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  std::map<int64_t, std::unique_ptr<Sequence>> seqs_;
  std::map<int64_t, std::unique_ptr<TextStream>> streams_;
  std::vector<RequestOutput> aborted_;
  std::mt19937_64 seed_rng_;
  int64_t next_id_ = 0;
  EngineStats stats_;
};

}  // namespace nanovllm
