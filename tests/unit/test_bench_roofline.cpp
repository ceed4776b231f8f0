// Roofline accounting: the counting functions by hand on small shapes, and bench.py's workload
// on Qwen3-0.6B, whose decode steps read about 14 TB of K/V in bf16.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bench/model_presets.h"
#include "bench/roofline.h"
#include "bench/workloads.h"
#include "runtime/error.h"

namespace nanovllm::bench {
namespace {

ModelShape qwen3_06b_bf16() {
  return model_shape(preset_model_config(*find_model_preset("qwen3-0.6b")), DType::BF16, DType::BF16);
}

TEST(Roofline, ModelShapeOfQwen3_06B) {
  const ModelShape m = qwen3_06b_bf16();
  EXPECT_EQ(m.layers, 28);
  EXPECT_EQ(m.kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);
  // Per layer: qkv 1024 x (2048 + 2 * 1024), o 2048 x 1024, gate_up 1024 x 6144, down 3072 x 1024.
  EXPECT_EQ(m.linear_params, 28LL * (1024 * 4096 + 2048 * 1024 + 1024 * 6144 + 3072 * 1024));
  EXPECT_EQ(m.layer_params, m.linear_params + 28LL * (2 * 1024 + 2 * 128));
  EXPECT_EQ(m.lm_head_params, 151936LL * 1024);
  // The published parameter count: 0.6B with the tied embedding counted once.
  const double total = static_cast<double>(m.layer_params + m.final_norm_params + m.lm_head_params);
  EXPECT_NEAR(total / 1e9, 0.596, 0.01);
  EXPECT_EQ(m.weight_bytes, 2);
  EXPECT_EQ(m.kv_bytes, 2);
}

// The published sizes: Qwen3-30B-A3B 30.5B parameters (3.3B active per token), Mixtral 8x7B
// 46.7B (12.9B active).
TEST(Roofline, ModelShapeOfMixturesOfExperts) {
  struct Want {
    const char* preset;
    double total, active;
    int64_t moe_layers, experts, k;
  };
  for (const Want& w : {Want{"qwen3-30b-a3b", 30.5, 3.3, 48, 128, 8}, Want{"mixtral-8x7b", 46.7, 12.9, 32, 8, 2}}) {
    SCOPED_TRACE(w.preset);
    const ModelShape m = model_shape(preset_model_config(*find_model_preset(w.preset)), DType::BF16, DType::BF16);
    EXPECT_EQ(m.moe_layers, w.moe_layers);
    EXPECT_EQ(m.experts, w.experts);
    EXPECT_EQ(m.experts_per_token, w.k);
    const double shared = static_cast<double>(m.layer_params + m.final_norm_params + 2 * m.lm_head_params);
    const double experts = static_cast<double>(m.moe_layers * m.expert_params);
    EXPECT_NEAR((shared + experts * static_cast<double>(m.experts)) / 1e9, w.total, 0.1);
    EXPECT_NEAR((shared + experts * static_cast<double>(m.experts_per_token)) / 1e9, w.active, 0.1);
    // One decode token reads k experts per layer; a large batch reads them all.
    const std::vector<SeqWork> one = {{1, 100, false}};
    const StepCost c1 = step_cost(m, one);
    EXPECT_NEAR(c1.weight_bytes, 2.0 * (static_cast<double>(m.layer_params + m.final_norm_params) +
                                        static_cast<double>(m.hidden) + experts * static_cast<double>(m.experts_per_token)),
                1.0);
    EXPECT_DOUBLE_EQ(c1.linear_flops, 2.0 * (static_cast<double>(m.linear_params) +
                                             experts * static_cast<double>(m.experts_per_token)));
  }
  EXPECT_DOUBLE_EQ(expected_experts_used(128, 8, 1), 8);
  EXPECT_NEAR(expected_experts_used(128, 8, 2), 128 * (1 - std::pow(120.0 / 128, 2)), 1e-9);  // 15.5
  EXPECT_NEAR(expected_experts_used(8, 2, 256), 8, 1e-9);
  EXPECT_EQ(expected_experts_used(0, 0, 5), 0);
}

TEST(Roofline, CausalPairs) {
  EXPECT_EQ(causal_pairs(1, 10), 10);    // a decode sees every key
  EXPECT_EQ(causal_pairs(4, 4), 10);     // 1 + 2 + 3 + 4
  EXPECT_EQ(causal_pairs(2, 5), 4 + 5);  // a chunk after 3 cached keys
}

TEST(Roofline, StepCostByHand) {
  ModelShape m;
  m.layers = 2, m.hidden = 8, m.heads = 4, m.kv_heads = 2, m.head_dim = 4, m.vocab = 100;
  m.linear_params = 1000, m.layer_params = 1100, m.final_norm_params = 8, m.lm_head_params = 800;
  m.weight_bytes = 2, m.kv_bytes = 2, m.logits_bytes = 4;
  const std::vector<SeqWork> step = {{3, 3, true}, {1, 10, true}, {5, 8, false}};  // prefill, decode, chunk
  const StepCost c = step_cost(m, step);
  const double kv_tok = 2 * 2 * 2 * 4 * 2;  // layers * (K, V) * nkv * d * bytes
  EXPECT_DOUBLE_EQ(c.weight_bytes, (1100 + 8 + 9 * 8 + 800) * 2.0);
  EXPECT_DOUBLE_EQ(c.kv_read_bytes, (3 + 10 + 8) * kv_tok);
  EXPECT_DOUBLE_EQ(c.kv_write_bytes, 9 * kv_tok);
  EXPECT_DOUBLE_EQ(c.logits_bytes, 2 * 100 * 4 * 2.0);
  EXPECT_DOUBLE_EQ(c.linear_flops, 2.0 * 1000 * 9);
  EXPECT_DOUBLE_EQ(c.lm_head_flops, 2.0 * 100 * 8 * 2);
  EXPECT_DOUBLE_EQ(c.attention_flops, 4.0 * 4 * 4 * 2 * (6 + 10 + (5 * 3 + 15)));
  // No sampled row: no lm_head read, no logits.
  const std::vector<SeqWork> chunk = {{5, 8, false}};
  const StepCost p = step_cost(m, chunk);
  EXPECT_DOUBLE_EQ(p.weight_bytes, (1100 + 8 + 5 * 8) * 2.0);
  EXPECT_EQ(p.logits_bytes, 0);
  EXPECT_EQ(p.lm_head_flops, 0);

  const Ceilings ceil{1000.0, 1e6};
  EXPECT_DOUBLE_EQ(floor_seconds(c, ceil), std::max(c.bytes() / 1000.0, c.flops() / 1e6));
  EXPECT_THROW(floor_seconds(c, Ceilings{}), Error);
  RooflineAccumulator acc(m, ceil);
  acc.add_step(step, 0.5);
  acc.add_step(chunk, 0.25);
  EXPECT_EQ(acc.steps(), 2);
  EXPECT_DOUBLE_EQ(acc.total().bytes(), c.bytes() + p.bytes());
  EXPECT_DOUBLE_EQ(acc.floor_s(), floor_seconds(c, ceil) + floor_seconds(p, ceil));
  EXPECT_DOUBLE_EQ(acc.step_seconds(), 0.75);
  EXPECT_FALSE(roofline_summary(acc, 2.0).empty());
}

// bench.py's workload on Qwen3-0.6B in bf16, scheduled as Nano-vLLM would at its best: every
// prompt prefilled (its first token sampled), then all sequences decoding together, one token
// per step, leaving as they reach max_tokens.
TEST(Roofline, BenchPyWorkloadOnQwen3_06B) {
  const Workload w = throughput_workload();
  const ModelShape m = qwen3_06b_bf16();
  const Ceilings h100{3.35e12, 989e12};  // illustrative: H100 SXM's HBM3 and dense bf16 peak
  RooflineAccumulator decode(m, h100), prefill(m, h100);
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    const int64_t len = static_cast<int64_t>(w.prompts[i].size());
    const std::vector<SeqWork> one = {{len, len, true}};
    prefill.add_step(one);
  }
  std::vector<int> generated(w.prompts.size(), 1);
  for (;;) {
    std::vector<SeqWork> step;
    for (size_t i = 0; i < w.prompts.size(); ++i)
      if (generated[i] < w.max_tokens[i]) {
        // The step computes the last sampled token: the context grows to prompt + generated.
        step.push_back({1, static_cast<int64_t>(w.prompts[i].size()) + generated[i], true});
        ++generated[i];
      }
    if (step.empty()) break;
    decode.add_step(step);
  }
  EXPECT_EQ(decode.steps(), 1023);  // the longest request asks for 1024 tokens
  // K/V read by the decode steps, in closed form: sum over requests of sum_{k=1}^{out-1} (prompt + k)
  // keys, each 28 layers x (K, V) x 8 heads x 128 x 2 bytes.
  double keys = 0;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    const double p = static_cast<double>(w.prompts[i].size()), o = w.max_tokens[i];
    keys += (o - 1) * p + (o - 1) * o / 2;
  }
  EXPECT_EQ(keys, 120795204.0);  // summed by Python over the same workload
  const double kv_bytes = keys * 28 * 2 * 8 * 128 * 2;
  EXPECT_DOUBLE_EQ(decode.total().kv_read_bytes, kv_bytes);
  EXPECT_GT(kv_bytes, 13e12);  // ~13.9 TB
  EXPECT_LT(kv_bytes, 15e12);
  // Weights: ~1.19 GB per decode step (the lm_head included), ~1.2 TB over the run.
  EXPECT_NEAR(decode.total().weight_bytes / 1e12, 1023 * 1.19e9 / 1e12, 0.05);
  // Decode is memory-bound at any batch here: the floor is its bytes over the bandwidth.
  EXPECT_EQ(decode.memory_bound_steps(), decode.steps());
  EXPECT_NEAR(decode.floor_s(), decode.total().bytes() / h100.bytes_per_s, 1e-9);
  const double total_floor = decode.floor_s() + prefill.floor_s();
  EXPECT_GT(total_floor, 4.6);  // ~4.70 s on an H100 at these ceilings
  EXPECT_LT(total_floor, 4.8);
}

}  // namespace
}  // namespace nanovllm::bench
