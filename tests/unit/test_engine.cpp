// The engine end to end on the CPU, on the fixture models: greedy generation equals
// transformers', outputs do not depend on how requests are batched, cached or preempted, and
// bad requests fail alone.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "../test_util.h"
#include "engine/llm_engine.h"
#include "loader/safetensors.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;
const std::string kTiny = (kFixtures / "models" / "qwen3-tied-f32-g2-d64").string();

using test::ints;

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

Config small_config() {
  Config c;
  c.kvcache_block_size = 16;
  c.num_kvcache_blocks = 256;
  return c;
}

class GreedyVsTransformers : public ::testing::TestWithParam<std::string> {};

TEST_P(GreedyVsTransformers, SameTokens) {
  const std::string name = GetParam();
  const TensorMap ref = load_safetensors_file(kFixtures / "reference" / (name + ".safetensors"));
  std::vector<Prompt> prompts;
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; ref.count("prompt." + std::to_string(i)); ++i) {
    prompts.push_back(ints(ref.at("prompt." + std::to_string(i))));
    expected.push_back(ints(ref.at("generate." + std::to_string(i))));
  }
  ASSERT_EQ(prompts.size(), 4u);
  LLM llm((kFixtures / "models" / name).string(), small_config());
  const auto out = llm.generate(prompts, greedy(24));
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[i].token_ids, expected[i]) << "prompt " << i;
    EXPECT_EQ(out[i].finish_reason, expected[i].size() < 24 ? "stop" : "length");
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, GreedyVsTransformers,
                         ::testing::Values("qwen3-tied-f32-g2-d64", "qwen3-untied-f32-g1-d128-sharded",
                                           "qwen3-tied-bf16-g4-d64", "qwen3-untied-bf16-g2-d128-sharded",
                                           "qwen3-untied-f16-g2-d64", "qwen3-untied-f32-g4-d64-bin",
                                           "qwen3-tied-bf16-g1-d128-bin-sharded", "qwen3-tied-f32-g2-d64-bias",
                                           "llama-untied-f32-g2-d64-rope3", "llama-tied-bf16-g4-d64",
                                           "qwen2-tied-bf16-g2-d64", "mistral-untied-f32-g4-d64-swa",
                                           "mixtral-untied-f32-e4k2", "qwen3moe-untied-f32-e6k3"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// 64 prompts built from a few shared stems (so prefix caching has something to find), of
// lengths across several blocks.
std::vector<Prompt> shared_stem_prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> stems(4);
  for (auto& s : stems) {
    s.resize(40);
    for (auto& t : s) t = static_cast<int32_t>(rng() % 512);
  }
  std::vector<Prompt> prompts;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p = stems[rng() % 4];
    p.resize(1 + rng() % 40);
    for (int extra = static_cast<int>(rng() % 30); extra > 0; --extra) p.push_back(static_cast<int32_t>(rng() % 512));
    prompts.push_back(p);
  }
  return prompts;
}

std::vector<std::vector<int32_t>> run_greedy(Config c, const std::vector<Prompt>& prompts, EngineStats* stats = nullptr) {
  LLM llm(kTiny, c);
  std::vector<SamplingParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) params.push_back(greedy(8 + static_cast<int>(i % 17)));
  for (auto& p : params) p.ignore_eos = true;
  const auto out = llm.generate(prompts, params);
  std::vector<std::vector<int32_t>> ids;
  for (const auto& o : out) {
    EXPECT_EQ(o.finish_reason, "length") << o.error;
    ids.push_back(o.token_ids);
  }
  EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks()) << "blocks leaked";
  const EngineStats st = llm.engine().stats();
  std::printf("  steps %llu, preemptions %llu, prefix hits %llu\n", (unsigned long long)st.steps,
              (unsigned long long)st.preemptions, (unsigned long long)st.prefix_cache_hits);
  if (stats) *stats = st;
  return ids;
}

TEST(EngineInvariance, GreedyOutputsDoNotDependOnCachingChunkingPreemptionOrBatching) {
  const auto prompts = shared_stem_prompts(64, 1234);
  // All 64 are admitted in the first step, so nothing is cached yet for them to share.
  const auto base = run_greedy(small_config(), prompts);

  Config no_prefix = small_config();
  no_prefix.enable_prefix_caching = false;
  EngineStats s;
  EXPECT_EQ(run_greedy(no_prefix, prompts, &s), base) << "prefix caching off";
  EXPECT_EQ(s.prefix_cache_hits, 0u);

  Config chunked = small_config();
  chunked.max_num_batched_tokens = 7;  // every prompt longer than 7 is split; chunks mix with decodes
  EXPECT_EQ(run_greedy(chunked, prompts, &s), base) << "small chunks";
  EXPECT_GT(s.prefix_cache_hits, 0u) << "later requests find the stems computed by earlier ones";

  Config unchunked = small_config();
  unchunked.enable_chunked_prefill = false;
  EXPECT_EQ(run_greedy(unchunked, prompts), base) << "chunked prefill off";

  Config tiny_cache = small_config();
  tiny_cache.kvcache_block_size = 4;
  tiny_cache.num_kvcache_blocks = 24;  // 96 tokens for 64 requests: constant preemption
  EXPECT_EQ(run_greedy(tiny_cache, prompts, &s), base) << "tiny KV cache";
  EXPECT_GT(s.preemptions, 10u);

  Config one_at_a_time = small_config();
  one_at_a_time.max_num_seqs = 1;
  EXPECT_EQ(run_greedy(one_at_a_time, prompts, &s), base) << "one request at a time";
  EXPECT_GT(s.prefix_cache_hits, 0u);
}

TEST(EngineSampling, SeededRequestsRepeatWhateverElseIsInTheBatch) {
  LLM llm(kTiny, small_config());
  SamplingParams p;
  p.temperature = 0.9;
  p.top_p = 0.9;
  p.top_k = 50;
  p.max_tokens = 20;
  p.ignore_eos = true;
  p.seed = 42;
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9};
  const auto alone = llm.generate({prompt}, p);
  std::vector<Prompt> crowd = shared_stem_prompts(20, 7);
  crowd.insert(crowd.begin() + 7, prompt);
  std::vector<SamplingParams> ps(crowd.size(), p);
  for (size_t i = 0; i < ps.size(); ++i) ps[i].seed = i == 7 ? std::optional<uint64_t>(42) : std::optional<uint64_t>(i);
  const auto in_crowd = llm.generate(crowd, ps);
  EXPECT_EQ(alone[0].token_ids, in_crowd[7].token_ids);
  p.seed = 43;
  EXPECT_NE(llm.generate({prompt}, p)[0].token_ids, alone[0].token_ids) << "another seed, another sample";
}

TEST(EngineSampling, StopTokensMinTokensLengthAndLogprobs) {
  LLM llm(kTiny, small_config());
  const std::vector<int32_t> prompt = {11, 12, 13};
  const auto free_run = llm.generate({prompt}, greedy(12));
  ASSERT_GE(free_run[0].token_ids.size(), 3u);
  // Stop on the third generated token.
  SamplingParams p = greedy(12);
  p.stop_token_ids = {free_run[0].token_ids[2]};
  auto out = llm.generate({prompt}, p)[0];
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(out.token_ids.size(), 3u);
  // min_tokens bans it before then.
  p.min_tokens = 5;
  p.stop_token_ids = {free_run[0].token_ids[0]};
  out = llm.generate({prompt}, p)[0];
  EXPECT_GE(out.token_ids.size(), 5u);
  EXPECT_NE(out.token_ids[0], free_run[0].token_ids[0]);
  // Logprobs: top-N sorted, the greedy token first, its logprob the sampled one.
  p = greedy(6);
  p.logprobs = 5;
  out = llm.generate({prompt}, p)[0];
  ASSERT_EQ(out.logprobs.size(), out.token_ids.size());
  for (const auto& lp : out.logprobs) {
    ASSERT_EQ(lp.top.size(), 5u);
    EXPECT_EQ(lp.top[0].first, lp.token_id);
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    for (size_t k = 1; k < lp.top.size(); ++k) EXPECT_GE(lp.top[k - 1].second, lp.top[k].second);
    EXPECT_LE(lp.logprob, 0.f);
  }
}

TEST(EngineErrors, BadRequestsFailAloneWithClearMessages) {
  Config c = small_config();
  c.max_model_len = 64;
  LLM llm(kTiny, c);
  SamplingParams ok = greedy(4);
  auto with = [&](auto edit) { SamplingParams p = ok; edit(p); return p; };
  const std::vector<Prompt> prompts = {std::vector<int32_t>{1, 2}, std::vector<int32_t>{}, std::vector<int32_t>(64, 3),
                                       std::vector<int32_t>{1, 2}, std::vector<int32_t>{1, 2}, std::vector<int32_t>{1, 2},
                                       std::vector<int32_t>{1, 2}, std::vector<int32_t>{1, 9999},
                                       std::string("text needs a tokenizer"), std::vector<int32_t>{4, 5}};
  const std::vector<SamplingParams> params = {
      ok, ok, ok,
      with([](SamplingParams& p) { p.temperature = -0.5; }),
      with([](SamplingParams& p) { p.top_p = 0; }),
      with([](SamplingParams& p) { p.top_k = 0; }),
      with([](SamplingParams& p) { p.max_tokens = 0; }),
      ok, ok, ok};
  const auto out = llm.generate(prompts, params);
  EXPECT_EQ(out[0].finish_reason, "length");
  EXPECT_THAT(out[1].error, HasSubstr("the prompt is empty"));
  EXPECT_THAT(out[2].error, HasSubstr("the prompt has 64 tokens; max_model_len is 64"));
  EXPECT_THAT(out[3].error, HasSubstr("SamplingParams.temperature = -0.500000 is invalid"));
  EXPECT_THAT(out[4].error, HasSubstr("SamplingParams.top_p = 0.000000 is invalid: must be in (0, 1]"));
  EXPECT_THAT(out[5].error, HasSubstr("SamplingParams.top_k = 0 is invalid"));
  EXPECT_THAT(out[6].error, HasSubstr("SamplingParams.max_tokens = 0 is invalid"));
  EXPECT_THAT(out[7].error, HasSubstr("token id 9999, outside the vocabulary [0, 512)"));
  EXPECT_EQ(out[9].finish_reason, "length") << "the others go on";
  for (int i : {1, 2, 3, 4, 5, 6, 7}) EXPECT_EQ(out[i].finish_reason, "error");
  EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks());
}

TEST(EngineErrors, ARequestThatCanNeverFitIsRefused) {
  Config c = small_config();
  c.kvcache_block_size = 4;
  c.num_kvcache_blocks = 5;  // 20 tokens
  LLM llm(kTiny, c);
  const auto out = llm.generate({std::vector<int32_t>(10, 1), std::vector<int32_t>(4, 1)}, {greedy(30), greedy(8)});
  EXPECT_THAT(out[0].error, HasSubstr("needs up to 10 KV-cache blocks (40 tokens) but the cache has only 5"));
  EXPECT_EQ(out[1].finish_reason, "length");
}

TEST(EngineErrors, InvalidConfigNamesTheField) {
  Config c = small_config();
  c.max_num_seqs = 0;
  try {
    LLM llm(kTiny, c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("Config.max_num_seqs = 0 is invalid"));
  }
}

TEST(EnginePrefixCache, SharedPrefixHitsAreCountedAndReported) {
  Config c = small_config();  // block size 16
  LLM llm(kTiny, c);
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 37) % 512;
  // First request computes the prefix; the next ones, run after it, find its 4 blocks.
  std::vector<int32_t> p0 = prefix;
  p0.push_back(1);
  EXPECT_EQ(llm.generate({p0}, greedy(2))[0].num_cached_tokens, 0);
  for (int i = 0; i < 5; ++i) {
    std::vector<int32_t> p = prefix;
    p.push_back(100 + i);
    p.push_back(200 + i);
    const auto o = llm.generate({p}, greedy(2))[0];
    EXPECT_EQ(o.num_cached_tokens, 64) << "request " << i;
  }
  const EngineStats s = llm.engine().stats();
  EXPECT_EQ(s.prefix_cache_hits, 5u * 4u);
  EXPECT_EQ(s.cached_prompt_tokens, 5u * 64u);
}

}  // namespace
}  // namespace nanovllm
