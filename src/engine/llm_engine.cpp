#include "engine/llm_engine.h"

#include <algorithm>
#include <chrono>

#include "loader/dummy_weights.h"
#include "loader/hf_cache.h"
#include "runtime/error.h"

namespace nanovllm {

LLMEngine::LLMEngine(Config config, const ParamRegistry::Progress& load_progress)
    : LLMEngine(std::move(config), nullptr, load_progress) {}

LLMEngine::LLMEngine(Config config, std::unique_ptr<Backend> backend, const ParamRegistry::Progress& load_progress)
    : config_(std::move(config)), seed_rng_(std::random_device{}()) {
  config_.validate();
  if (!(config_.load_format == "dummy" && is_model_preset(config_.model)))  // a preset has no folder
    config_.model = resolve_model_path(config_.model).string();  // a folder, or a hub id in the cache
  backend_ = backend ? std::move(backend) : make_backend(config_.backend);
  model_ = config_.load_format == "dummy" ? load_dummy_model(config_.model, *backend_)
                                          : load_model(config_.model, *backend_, load_progress);
  const ModelConfig& mc = model_->config();
  config_.max_model_len = std::min(config_.max_model_len, usable_positions(mc));
  codec_ = load_text_codec(config_.model);
  try {  // a template we cannot render must not stop plain generation: chat reports it
    chat_template_ = ModelChatTemplate::from_folder(config_.model);
  } catch (const Error& e) {
    chat_template_error_ = e.what();
  }

  const GenerationConfig gen = load_generation_config(config_.model);
  eos_ids_ = gen.present && !gen.eos_token_ids.empty() ? gen.eos_token_ids : mc.eos_token_ids;

  // The runner sizes the KV cache (from memory, on a GPU, after profiling the largest step).
  runner_ = std::make_unique<ModelRunner>(*model_, *backend_, config_);
  blocks_ = std::make_unique<BlockManager>(runner_->num_blocks(), config_.kvcache_block_size,
                                           config_.enable_prefix_caching);
  scheduler_ = std::make_unique<Scheduler>(config_, *blocks_);
  async_ = runner_->async_scheduling();
}

LLMEngine::~LLMEngine() = default;

int64_t LLMEngine::add_request(const std::string& prompt, const SamplingParams& params) {
  if (!codec_)
    throw Error(config_.model + " has no tokenizer.json: give the prompt as token ids");
  return add_request(codec_->encode(prompt), params);
}

int64_t LLMEngine::add_request(std::vector<int32_t> prompt, const SamplingParams& params) {
  params.validate();
  const ModelConfig& mc = model_->config();
  if (prompt.empty()) throw Error("the prompt is empty");
  for (int32_t id : prompt)
    if (id < 0 || id >= mc.vocab_size)
      throw Error("the prompt has token id " + std::to_string(id) + ", outside the vocabulary [0, " +
                  std::to_string(mc.vocab_size) + ")");
  const int len = static_cast<int>(prompt.size());
  if (len >= config_.max_model_len)
    throw Error("the prompt has " + std::to_string(len) + " tokens; max_model_len is " +
                std::to_string(config_.max_model_len) + ", which leaves no room for output");
  if (!params.stop.empty() && !codec_)
    throw Error("stop strings need a tokenizer, and " + config_.model + " has no tokenizer.json");
  // A request that could never hold all its tokens in the cache would wait forever.
  const int64_t most_tokens = std::min<int64_t>(int64_t{len} + params.max_tokens, config_.max_model_len);
  const int needed = blocks_->blocks_for(static_cast<int>(most_tokens));
  if (needed > blocks_->num_blocks())
    throw Error("the request needs up to " + std::to_string(needed) + " KV-cache blocks (" +
                std::to_string(most_tokens) + " tokens) but the cache has only " +
                std::to_string(blocks_->num_blocks()));

  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->tokens = std::move(prompt);
  seq->num_prompt_tokens = len;
  seq->params = params;
  seq->rng_seed = params.seed ? *params.seed : seed_rng_();
  seq->arrival = seq->id;
  if (codec_) streams_[seq->id] = codec_->stream(params.skip_special_tokens);
  stats_.prompt_tokens += static_cast<uint64_t>(len);
  scheduler_->add(seq.get());
  const int64_t id = seq->id;
  seqs_[id] = std::move(seq);
  return id;
}

SamplingBatch LLMEngine::sampling_batch(const SchedulerOutput& out) const {
  SamplingBatch b;
  for (const auto& s : out.scheduled) {
    if (!s.samples) continue;
    const Sequence& seq = *s.seq;
    const SamplingParams& p = seq.params;
    b.temperature.push_back(static_cast<float>(p.temperature));
    b.top_k.push_back(p.top_k);
    b.top_p.push_back(static_cast<float>(p.top_p));
    b.min_p.push_back(static_cast<float>(p.min_p));
    b.repetition_penalty.push_back(static_cast<float>(p.repetition_penalty));
    b.presence_penalty.push_back(static_cast<float>(p.presence_penalty));
    b.frequency_penalty.push_back(static_cast<float>(p.frequency_penalty));
    b.seed.push_back(seq.rng_seed);
    b.step.push_back(static_cast<uint64_t>(seq.num_output_tokens()));
    b.tokens.push_back(&seq.tokens);
    b.num_prompt_tokens.push_back(seq.num_prompt_tokens);
    std::vector<int32_t> banned;
    if (seq.num_output_tokens() < p.min_tokens) {
      if (!p.ignore_eos) banned = eos_ids_;
      banned.insert(banned.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
    }
    b.banned.push_back(std::move(banned));
    b.max_logprobs = std::max(b.max_logprobs, p.logprobs);
  }
  return b;
}

bool LLMEngine::append_token(Sequence& seq, int32_t token, float logprob,
                             const std::vector<std::pair<int32_t, float>>* top) {
  const SamplingParams& p = seq.params;
  seq.tokens.push_back(token);
  ++stats_.generated_tokens;
  if (p.logprobs > 0) {
    TokenLogprobs lp{token, logprob, {}};
    if (top) lp.top.assign(top->begin(), top->begin() + std::min<size_t>(top->size(), p.logprobs));
    seq.logprobs.push_back(std::move(lp));
  }
  auto stop_with = [&](const char* reason) {
    seq.finish_reason = reason;
    return true;
  };
  const int n_out = seq.num_output_tokens();
  const bool may_stop = n_out >= p.min_tokens;
  auto contains = [](const std::vector<int32_t>& v, int32_t t) { return std::find(v.begin(), v.end(), t) != v.end(); };
  if (may_stop && !p.ignore_eos && contains(eos_ids_, token)) return stop_with("stop");
  if (may_stop && contains(p.stop_token_ids, token)) return stop_with("stop");
  if (auto it = streams_.find(seq.id); it != streams_.end()) {
    const size_t before = seq.text.size();
    seq.text += it->second->push(token);
    if (may_stop && !p.stop.empty()) {
      // A stop string may straddle tokens: search from where the newest text could complete one.
      size_t longest = 0;
      for (const auto& s : p.stop) longest = std::max(longest, s.size());
      const size_t from = before >= longest ? before - longest + 1 : 0;
      size_t cut = std::string::npos;
      for (const auto& s : p.stop)
        if (!s.empty()) cut = std::min(cut, seq.text.find(s, from));
      if (cut != std::string::npos) {
        seq.text.resize(cut);
        streams_.erase(it);  // the rest of the text is not wanted
        return stop_with("stop");
      }
    }
  }
  if (seq.reached_length(config_.max_model_len)) return stop_with("length");
  return false;
}

RequestOutput LLMEngine::output_of(const Sequence& seq) const {
  RequestOutput o;
  o.request_id = seq.id;
  o.text = seq.text;
  o.token_ids.assign(seq.tokens.begin() + seq.num_prompt_tokens, seq.tokens.end());
  o.finish_reason = seq.finish_reason;
  o.num_prompt_tokens = seq.num_prompt_tokens;
  o.num_cached_tokens = seq.num_cached_tokens;
  o.logprobs = seq.logprobs;
  o.finished = true;
  return o;
}

std::vector<RequestOutput> LLMEngine::step() { return run_step(nullptr); }

std::vector<RequestOutput> LLMEngine::step(std::vector<RequestDelta>& deltas) {
  deltas.clear();
  return run_step(&deltas);
}

// One step. Synchronous: schedule, launch, collect. Asynchronous (docs/engine.md): schedule
// step n + 1 while step n's tokens are still on the device (its sequences' last tokens are
// placeholders that the runner fills on the device), launch it, then collect step n, so that
// the host's work for step n runs while the GPU computes step n + 1.
std::vector<RequestOutput> LLMEngine::run_step(std::vector<RequestDelta>* deltas) {
  const auto step_start = std::chrono::steady_clock::now();
  std::vector<RequestOutput> done = std::move(aborted_);
  aborted_.clear();
  if (deltas) *deltas = std::move(aborted_deltas_);
  aborted_deltas_.clear();
  // Penalties read the token history on the host: its pending tokens must arrive first.
  if (inflight_ && inflight_->needs_host_tokens) collect_inflight(done, deltas);
  const SchedulerOutput out = scheduler_->schedule();
  stats_.preemptions += static_cast<uint64_t>(out.num_preempted);
  if (out.empty()) {
    if (inflight_) {  // its sequences may be all that is left (or wait for its tokens)
      collect_inflight(done, deltas);
      return done;
    }
    if (scheduler_->has_unfinished())
      throw Error("scheduler: requests are waiting but none can be scheduled (the KV cache is too small)");
    return done;
  }
  InFlight launched{out, {}, step_start, false};
  if (step_observer_)
    for (const auto& s : out.scheduled)
      launched.info.seqs.push_back({s.num_tokens, s.seq->num_computed_tokens + s.num_tokens, s.samples});
  runner_->launch(out, sampling_batch(out));
  ++stats_.steps;
  if (inflight_) collect_inflight(done, deltas);  // the step before, while this one runs
  scheduler_->update_computed(out);               // skips the sequences that collection finished
  int row = 0;
  for (const auto& s : out.scheduled) {
    if (!s.samples) continue;
    const int r = row++;
    Sequence& seq = *s.seq;
    if (seq.is_finished()) continue;  // stopped by its previous token: this one is dropped
    seq.tokens.push_back(Sequence::kPendingToken);
    seq.pending = true;
    seq.pending_row = r;
    launched.needs_host_tokens = launched.needs_host_tokens || seq.params.has_penalty();
  }
  inflight_ = std::move(launched);
  if (!async_) collect_inflight(done, deltas);
  return done;
}

void LLMEngine::collect_inflight(std::vector<RequestOutput>& done, std::vector<RequestDelta>* deltas) {
  InFlight f = std::move(*inflight_);
  inflight_.reset();
  const size_t retired_before = retired_.size();
  const SamplerOutput sampled = runner_->collect();
  int row = 0;
  for (const auto& s : f.out.scheduled) {
    if (!s.samples) continue;
    const int r = row++;
    Sequence& seq = *s.seq;
    if (seq.is_finished()) continue;  // aborted, or stopped by the token before: dropped
    if (!seq.pending || seq.pending_row != r)
      throw Error("engine: sequence " + std::to_string(seq.id) + " lost track of its pending token");
    seq.tokens.pop_back();
    seq.pending = false;
    seq.pending_row = -1;
    const int32_t token = sampled.token[static_cast<size_t>(r)];
    const bool stop = append_token(seq, token, sampled.logprob[static_cast<size_t>(r)],
                                   sampled.top.empty() ? nullptr : &sampled.top[static_cast<size_t>(r)]);
    if (!stop) {
      if (deltas) deltas->push_back(delta_of(seq, {token}, false));
      continue;
    }
    if (auto it = streams_.find(seq.id); it != streams_.end()) seq.text += it->second->flush();
    if (deltas) deltas->push_back(delta_of(seq, {token}, true));
    scheduler_->finish(&seq);
    stats_.cached_prompt_tokens += static_cast<uint64_t>(seq.num_cached_tokens);
    done.push_back(output_of(seq));
    streams_.erase(seq.id);
    retire(seq.id);
  }
  // Those retired before this collection are named by no launched step any more: a step is
  // planned after every retirement that precedes it, and finished sequences are not scheduled.
  retired_.erase(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(retired_before));
  if (step_observer_) {
    // Steps overlap: each is charged from its start or the previous collection, whichever is
    // later, so that the steps' times add up to the wall time.
    const auto now = std::chrono::steady_clock::now();
    f.info.seconds = std::chrono::duration<double>(now - std::max(f.started, last_collected_)).count();
    last_collected_ = now;
    step_observer_(f.info);
  }
}

void LLMEngine::retire(int64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  retired_.push_back(std::move(it->second));
  seqs_.erase(it);
}

void LLMEngine::abort(int64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Sequence& seq = *it->second;
  if (seq.pending) {  // its token is still on the device: dropped with the request
    seq.tokens.pop_back();
    seq.pending = false;
  }
  scheduler_->finish(&seq);
  seq.finish_reason = "abort";
  aborted_.push_back(output_of(seq));
  aborted_deltas_.push_back(delta_of(seq, {}, true));
  streams_.erase(id);
  retire(id);  // a launched step may still name it
}

RequestDelta LLMEngine::delta_of(Sequence& seq, std::vector<int32_t> new_tokens, bool finished) const {
  RequestDelta d;
  d.request_id = seq.id;
  d.token_ids = std::move(new_tokens);
  d.finished = finished;
  if (finished) d.finish_reason = seq.finish_reason;
  size_t end = seq.text.size();
  if (!finished && !seq.params.stop.empty()) {
    // Hold back the text that a stop string completed by later tokens would cut.
    size_t longest = 0;
    for (const auto& stop : seq.params.stop) longest = std::max(longest, stop.size());
    end = end > longest - 1 ? end - (longest - 1) : 0;
    while (end > 0 && (static_cast<unsigned char>(seq.text[end]) & 0xC0) == 0x80) --end;  // whole characters
  }
  const size_t from = std::min(seq.text_emitted, seq.text.size());
  if (end > from) {
    d.text = seq.text.substr(from, end - from);
    seq.text_emitted = end;
  }
  return d;
}

std::vector<int32_t> LLMEngine::tokenize(const std::string& text, bool add_special_tokens) const {
  if (!codec_) throw Error(config_.model + " has no tokenizer.json");
  return codec_->encode(text, add_special_tokens);
}

std::string LLMEngine::apply_chat_template(const nlohmann::ordered_json& messages, const ChatTemplateOptions& opts,
                                           const nlohmann::ordered_json& tools) const {
  if (!chat_template_error_.empty()) throw Error("the chat template cannot be used: " + chat_template_error_);
  if (!chat_template_)
    throw Error(config_.model + " has no chat template (no chat_template in tokenizer_config.json, no "
                "chat_template.jinja)");
  return chat_template_->render(messages, opts, tools);
}

bool LLMEngine::has_unfinished() const {
  return scheduler_->has_unfinished() || !aborted_.empty() || inflight_.has_value();
}

EngineStats LLMEngine::stats() const {
  EngineStats s = stats_;
  s.prefix_cache_hits = blocks_->hits();
  s.prefix_cache_misses = blocks_->misses();
  return s;
}

void LLMEngine::check_invariants() const { blocks_->check_invariants(scheduler_->live()); }

}  // namespace nanovllm
