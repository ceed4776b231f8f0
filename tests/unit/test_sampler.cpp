// The CPU sampler: its draws follow the filtered, renormalised distribution, and penalties,
// bans and greedy ties behave as documented (docs/engine.md, "Sampling").
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm {
namespace {

SamplingBatch one_row(float temperature, int top_k = -1, float top_p = 1.f, float min_p = 0.f) {
  SamplingBatch b;
  b.temperature = {temperature};
  b.top_k = {top_k};
  b.top_p = {top_p};
  b.min_p = {min_p};
  b.repetition_penalty = {1.f};
  b.presence_penalty = {0.f};
  b.frequency_penalty = {0.f};
  b.seed = {1234};
  b.step = {0};
  b.tokens = {nullptr};
  b.num_prompt_tokens = {0};
  b.banned = {{}};
  return b;
}

// Draw n samples over successive step counters; returns frequencies.
std::vector<double> frequencies(const std::vector<float>& logits, SamplingBatch b, int n) {
  std::vector<double> f(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    b.step[0] = static_cast<uint64_t>(i);
    ++f[cpu::sample(logits.data(), 1, static_cast<int64_t>(logits.size()), b).token[0]];
  }
  for (auto& x : f) x /= n;
  return f;
}

std::vector<double> softmax(const std::vector<float>& l, float t) {
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += (p[i] = std::exp(l[i] / t));
  for (auto& x : p) x /= z;
  return p;
}

TEST(Sampler, DrawsFollowTheTemperedDistribution) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 1.5f};
  for (float t : {0.5f, 1.0f, 2.0f}) {
    const auto f = frequencies(logits, one_row(t), 40000);
    const auto p = softmax(logits, t);
    for (size_t i = 0; i < p.size(); ++i)
      EXPECT_NEAR(f[i], p[i], 4 * std::sqrt(p[i] * (1 - p[i]) / 40000) + 1e-3) << "T=" << t << " token " << i;
  }
}

TEST(Sampler, TopKTopPAndMinPKeepOnlyTheirSetRenormalised) {
  // Probabilities at T=1: about 0.49, 0.30, 0.15, 0.05, 0.01.
  const std::vector<float> logits = {std::log(0.49f), std::log(0.30f), std::log(0.15f), std::log(0.05f), std::log(0.01f)};
  auto f = frequencies(logits, one_row(1.f, 2), 20000);
  EXPECT_EQ(f[2] + f[3] + f[4], 0.0);
  EXPECT_NEAR(f[0], 0.49 / 0.79, 0.02);
  f = frequencies(logits, one_row(1.f, -1, 0.7f), 20000);  // 0.49 + 0.30 >= 0.7
  EXPECT_EQ(f[2] + f[3] + f[4], 0.0);
  EXPECT_GT(f[1], 0.3);
  f = frequencies(logits, one_row(1.f, -1, 1.f, 0.25f), 20000);  // keep p >= 0.1225
  EXPECT_EQ(f[3] + f[4], 0.0);
  EXPECT_NEAR(f[2], 0.15 / 0.94, 0.02);
}

TEST(Sampler, GreedyTakesTheLowestIdOfTiesAndRespectsBans) {
  const std::vector<float> logits = {0.f, 3.f, 3.f, 1.f};
  SamplingBatch b = one_row(0.f);
  EXPECT_EQ(cpu::sample(logits.data(), 1, 4, b).token[0], 1);
  b.banned = {{1}};
  EXPECT_EQ(cpu::sample(logits.data(), 1, 4, b).token[0], 2);
}

TEST(Sampler, PenaltiesFollowTransformersAndOpenAI) {
  // Token 0 (positive logit) is in the prompt, token 1 (negative) in the output twice.
  const std::vector<float> logits = {2.0f, -0.5f, 1.0f, 0.9f};
  std::vector<int32_t> history = {0, 1, 1};
  SamplingBatch b = one_row(0.f);
  b.tokens = {&history};
  b.num_prompt_tokens = {1};
  b.repetition_penalty = {4.f};  // token 0: 2.0 / 4 = 0.5; token 1: -0.5 * 4 = -2
  EXPECT_EQ(cpu::sample(logits.data(), 1, 4, b).token[0], 2);
  b.repetition_penalty = {1.f};
  b.frequency_penalty = {0.6f};  // only output tokens: token 0 unaffected
  EXPECT_EQ(cpu::sample(logits.data(), 1, 4, b).token[0], 0);
  const std::vector<float> close = {1.0f, 1.05f, 0.f, 0.f};
  b.frequency_penalty = {0.f};
  b.presence_penalty = {0.1f};  // token 1 in the output: 1.05 - 0.1 < 1.0
  EXPECT_EQ(cpu::sample(close.data(), 1, 4, b).token[0], 0);
}

TEST(Sampler, LogprobsAreOfTheRawLogits) {
  const std::vector<float> logits = {1.f, 2.f, 3.f};
  SamplingBatch b = one_row(0.f);
  b.max_logprobs = 2;
  b.repetition_penalty = {2.f};
  std::vector<int32_t> hist = {2};
  b.tokens = {&hist};
  const auto out = cpu::sample(logits.data(), 1, 3, b);
  const double lz = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_EQ(out.token[0], 1);  // 3/2 = 1.5 < 2 after the penalty
  EXPECT_NEAR(out.logprob[0], 2.0 - lz, 1e-6);
  ASSERT_EQ(out.top[0].size(), 2u);
  EXPECT_EQ(out.top[0][0].first, 2);
  EXPECT_NEAR(out.top[0][0].second, 3.0 - lz, 1e-6);
}

}  // namespace
}  // namespace nanovllm
