// Asynchronous scheduling on the CPU (Config::async_scheduling "on"): the engine queues step
// n + 1 before it collects step n's tokens, whose values step n + 1 reads on the device. The
// CPU backend computes as it is called, so here it gains nothing; what these tests pin down is
// the bookkeeping: the same outputs as the synchronous engine (greedy, seeded sampling, stops on
// sampled tokens, penalties, logprobs, chunking, preemption, prefix caching), the order of the
// backend calls that lets the host plan ahead, and aborts and stops while a step is in flight.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "../test_util.h"
#include "engine/llm_engine.h"
#include "forwarding_backend.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

const std::string kTiny =
    (std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "models" / "qwen3-tied-f32-g2-d64").string();

Config config(const std::string& async) {
  Config c;
  c.kvcache_block_size = 16;
  c.num_kvcache_blocks = 256;
  c.async_scheduling = async;
  return c;
}

std::vector<Prompt> prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> stem(40);
  for (auto& t : stem) t = static_cast<int32_t>(rng() % 512);
  std::vector<Prompt> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(stem.begin(), stem.begin() + 1 + rng() % 40);
    for (int extra = static_cast<int>(rng() % 30); extra > 0; --extra) p.push_back(static_cast<int32_t>(rng() % 512));
    out.push_back(p);
  }
  return out;
}

// A mix of every way a request can sample and stop, different per request.
std::vector<SamplingParams> mixed_params(size_t n) {
  std::vector<SamplingParams> ps;
  for (size_t i = 0; i < n; ++i) {
    SamplingParams p;
    p.max_tokens = 3 + static_cast<int>(i % 19);
    p.temperature = i % 3 == 0 ? 0.0 : 0.8;
    p.seed = 1000 + i;
    p.top_k = i % 4 == 1 ? 20 : -1;
    p.logprobs = static_cast<int>(i % 3);
    p.ignore_eos = i % 5 == 0;
    if (i % 4 == 2)  // 64 of the 512 ids: most of these stop on a sampled token
      for (int k = 0; k < 64; ++k) p.stop_token_ids.push_back(static_cast<int32_t>((i * 13 + 8 * k) % 512));
    if (i % 6 == 4) p.min_tokens = 2;
    if (i % 8 == 3) p.repetition_penalty = 1.3;  // reads the history on the host: collects first
    if (i % 9 == 5) p.frequency_penalty = 0.5;
    ps.push_back(p);
  }
  return ps;
}

struct EngineRun {
  std::vector<RequestOutput> outputs;
  EngineStats stats;
};

EngineRun generate(Config c, const std::vector<Prompt>& ps, const std::vector<SamplingParams>& params) {
  c.model = kTiny;
  LLM llm(c.model, c);
  EngineRun r;
  r.outputs = llm.generate(ps, params);
  r.stats = llm.engine().stats();
  EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks()) << "blocks leaked";
  EXPECT_FALSE(llm.engine().has_unfinished());
  return r;
}

void expect_same(const EngineRun& sync, const EngineRun& async, const std::string& what) {
  ASSERT_EQ(sync.outputs.size(), async.outputs.size()) << what;
  int stopped = 0;
  for (size_t i = 0; i < sync.outputs.size(); ++i) {
    const RequestOutput &a = sync.outputs[i], &b = async.outputs[i];
    EXPECT_EQ(a.token_ids, b.token_ids) << what << ", request " << i;
    EXPECT_EQ(a.finish_reason, b.finish_reason) << what << ", request " << i;
    ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what << ", request " << i;
    for (size_t k = 0; k < a.logprobs.size(); ++k) {
      EXPECT_EQ(a.logprobs[k].token_id, b.logprobs[k].token_id);
      EXPECT_EQ(a.logprobs[k].logprob, b.logprobs[k].logprob);
      EXPECT_EQ(a.logprobs[k].top, b.logprobs[k].top);
    }
    stopped += a.finish_reason == "stop";
  }
  EXPECT_GT(stopped, 0) << what << ": no request stopped on a sampled token, so the dropped step was not exercised";
}

TEST(AsyncScheduling, SameOutputsAsSynchronousUnderChunkingPreemptionAndCaching) {
  const auto ps = prompts(48, 99);
  const auto params = mixed_params(ps.size());
  struct Case {
    const char* name;
    void (*edit)(Config&);
  };
  const Case cases[] = {
      {"default", [](Config&) {}},
      {"small chunks", [](Config& c) { c.max_num_batched_tokens = 7; }},
      {"tiny KV cache", [](Config& c) {
         c.kvcache_block_size = 4;
         c.num_kvcache_blocks = 24;
       }},
      {"one request at a time", [](Config& c) { c.max_num_seqs = 1; }},
      {"no prefix caching", [](Config& c) { c.enable_prefix_caching = false; }},
  };
  for (const Case& k : cases) {
    Config off = config("off"), on = config("on");
    k.edit(off);
    k.edit(on);
    const EngineRun a = generate(off, ps, params), b = generate(on, ps, params);
    expect_same(a, b, k.name);
    if (std::string(k.name) == "tiny KV cache") {
      EXPECT_GT(b.stats.preemptions, 5u);
    }
    if (std::string(k.name) == "one request at a time") {
      EXPECT_GT(b.stats.prefix_cache_hits, 0u);
    }
  }
}

TEST(AsyncScheduling, LengthLimitsAreNotStepPastAndMaxModelLenHolds) {
  Config off = config("off"), on = config("on");
  off.max_model_len = on.max_model_len = 40;  // prompts of up to 69 tokens are refused; others stop at 40
  const auto ps = prompts(24, 5);
  std::vector<SamplingParams> params(ps.size());
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].temperature = 0;
    params[i].ignore_eos = true;
    params[i].max_tokens = 1 + static_cast<int>(i % 6);
  }
  const EngineRun a = generate(off, ps, params), b = generate(on, ps, params);
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    EXPECT_EQ(a.outputs[i].token_ids, b.outputs[i].token_ids) << i;
    EXPECT_EQ(a.outputs[i].error, b.outputs[i].error) << i;
  }
  // A request that stops by length is never given a step beyond its last token: the same
  // number of forward passes as the synchronous engine.
  EXPECT_EQ(a.stats.steps, b.stats.steps);
}

// Records the order of the backend's step and sampling calls.
class Recording final : public test::ForwardingBackend {
 public:
  std::vector<std::string>* log = nullptr;
  void begin_step(bool decode) override {
    log->push_back("begin_step");
    ForwardingBackend::begin_step(decode);
  }
  void sample_async(const Tensor& logits, const SamplingBatch& b) override {
    log->push_back("sample_async");
    ForwardingBackend::sample_async(logits, b);
  }
  SamplerOutput collect_sample() override {
    log->push_back("collect");
    return ForwardingBackend::collect_sample();
  }
};

TEST(AsyncScheduling, TheNextStepIsQueuedBeforeTheTokensOfThePreviousAreCollected) {
  for (const std::string mode : {"off", "on"}) {
    std::vector<std::string> log;
    auto backend = std::make_unique<Recording>();
    backend->log = &log;
    Config c = config(mode);
    c.model = kTiny;
    LLMEngine engine(c, std::move(backend));
    SamplingParams p;
    p.temperature = 0;
    p.ignore_eos = true;
    p.max_tokens = 4;
    engine.add_request(std::vector<int32_t>{1, 2, 3}, p);
    log.clear();  // construction ran profiling steps
    std::vector<RequestDelta> deltas;
    std::vector<size_t> tokens_per_call;
    while (engine.has_unfinished()) {
      engine.step(deltas);
      size_t n = 0;
      for (const auto& d : deltas) n += d.token_ids.size();
      tokens_per_call.push_back(n);
    }
    std::vector<std::string> expected;
    if (mode == "off") {
      for (int i = 0; i < 4; ++i) expected.insert(expected.end(), {"begin_step", "sample_async", "collect"});
      EXPECT_EQ(tokens_per_call, (std::vector<size_t>{1, 1, 1, 1}));
    } else {
      // Step 1 is queued; each later call queues step n + 1, then collects step n; the last
      // call only collects (the fourth token stops the request by length: no fifth step).
      expected = {"begin_step", "sample_async"};
      for (int i = 0; i < 3; ++i) expected.insert(expected.end(), {"begin_step", "sample_async", "collect"});
      expected.push_back("collect");
      EXPECT_EQ(tokens_per_call, (std::vector<size_t>{0, 1, 1, 1, 1}));
    }
    EXPECT_EQ(log, expected) << mode;
  }
}

TEST(AsyncScheduling, AbortsAndStopsWhileAStepIsInFlightLeakNothing) {
  Config c = config("on");
  c.model = kTiny;
  c.kvcache_block_size = 4;
  c.num_kvcache_blocks = 40;
  c.max_num_batched_tokens = 32;
  c.max_num_seqs = 8;
  LLMEngine engine(c);
  std::mt19937 rng(7);
  std::vector<int64_t> live;
  size_t outputs = 0, aborted = 0, submitted = 0;
  while (submitted < 400 || engine.has_unfinished()) {
    for (int k = static_cast<int>(rng() % 3); k > 0 && submitted < 400; --k, ++submitted) {
      std::vector<int32_t> prompt(1 + rng() % 30);
      for (auto& t : prompt) t = static_cast<int32_t>(rng() % 512);
      SamplingParams p;
      p.temperature = rng() % 2 ? 0.0 : 0.9;
      p.max_tokens = 1 + static_cast<int>(rng() % 12);
      p.stop_token_ids = {static_cast<int32_t>(rng() % 512)};
      if (rng() % 4 == 0) p.presence_penalty = 0.5;
      live.push_back(engine.add_request(prompt, p));
    }
    if (!live.empty() && rng() % 4 == 0) engine.abort(live[rng() % live.size()]);  // often mid-flight
    for (const RequestOutput& o : engine.step()) {
      auto it = std::find(live.begin(), live.end(), o.request_id);
      ASSERT_NE(it, live.end()) << "an output for an unknown or finished request";
      live.erase(it);
      ++outputs;
      aborted += o.finish_reason == "abort";
      for (int32_t t : o.token_ids) ASSERT_GE(t, 0) << "a placeholder leaked into an output";
    }
    ASSERT_NO_THROW(engine.check_invariants());
  }
  EXPECT_TRUE(live.empty());
  EXPECT_EQ(outputs, 400u);
  EXPECT_GT(aborted, 20u);
  EXPECT_GT(engine.stats().preemptions, 0u);
  EXPECT_EQ(engine.num_free_kv_blocks(), engine.num_kv_blocks());
}

TEST(AsyncScheduling, InvalidModeNamesTheField) {
  Config c = config("sometimes");
  c.model = kTiny;
  try {
    LLMEngine engine(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Config.async_scheduling = \"sometimes\" is invalid"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nanovllm
