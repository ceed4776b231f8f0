#include "bench/roofline.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runtime/error.h"

namespace nanovllm::bench {

ModelShape model_shape(const ModelConfig& c, DType weight_dtype, DType kv_dtype) {
  ModelShape m;
  m.layers = c.num_hidden_layers;
  m.hidden = c.hidden_size;
  m.heads = c.num_attention_heads;
  m.kv_heads = c.num_key_value_heads;
  m.head_dim = c.head_dim;
  m.vocab = c.vocab_size;
  const int64_t H = m.hidden, d = m.head_dim, I = c.intermediate_size;
  const int64_t q = m.heads * d, kv = m.kv_heads * d;
  const int64_t attention_linear = H * (q + 2 * kv) + q * H, dense_mlp = H * 2 * I + I * H;
  int64_t per_layer_other = 2 * H;                                               // input and post-attention norms
  if (c.model_type == "qwen3" || c.model_type == "qwen3_moe") per_layer_other += 2 * d;  // q_norm, k_norm
  if (c.attention_bias) per_layer_other += q + 2 * kv + H;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const bool moe = is_moe_layer(c, layer);
    const int64_t linear = attention_linear + (moe ? int64_t{c.num_experts} * H : dense_mlp);  // MoE: the router
    m.linear_params += linear;
    m.layer_params += linear + per_layer_other;
    m.moe_layers += moe;
  }
  if (m.moe_layers > 0) {
    m.experts = c.num_experts;
    m.experts_per_token = c.experts_per_token;
    m.expert_params = 3 * H * int64_t{c.moe_intermediate_size};
  }
  m.final_norm_params = H;
  m.lm_head_params = m.vocab * H;
  m.weight_bytes = static_cast<double>(dtype_size(weight_dtype));
  m.kv_bytes = static_cast<double>(dtype_size(kv_dtype));
  return m;
}

StepCost& StepCost::operator+=(const StepCost& o) {
  weight_bytes += o.weight_bytes, kv_read_bytes += o.kv_read_bytes, kv_write_bytes += o.kv_write_bytes;
  logits_bytes += o.logits_bytes;
  linear_flops += o.linear_flops, lm_head_flops += o.lm_head_flops, attention_flops += o.attention_flops;
  return *this;
}

double causal_pairs(int64_t q, int64_t context) {
  // sum_{i=0}^{q-1} (context - q + i + 1) = q (context - q) + q (q + 1) / 2
  const double qd = static_cast<double>(q);
  return qd * static_cast<double>(context - q) + qd * (qd + 1) / 2;
}

double expected_experts_used(int64_t experts, int64_t per_token, double tokens) {
  if (experts <= 0 || tokens <= 0) return 0;
  const double e = static_cast<double>(experts), k = static_cast<double>(std::min(per_token, experts));
  return e * (1 - std::pow(1 - k / e, tokens));
}

StepCost step_cost(const ModelShape& m, std::span<const SeqWork> seqs) {
  double tokens = 0, rows = 0, keys = 0, pairs = 0;
  for (const SeqWork& s : seqs) {
    tokens += static_cast<double>(s.query_tokens);
    rows += s.samples ? 1 : 0;
    keys += static_cast<double>(s.context_len);
    pairs += causal_pairs(s.query_tokens, s.context_len);
  }
  StepCost c;
  if (tokens == 0) return c;
  const double kv_per_token = static_cast<double>(m.layers * 2 * m.kv_heads * m.head_dim) * m.kv_bytes;
  const double H = static_cast<double>(m.hidden), V = static_cast<double>(m.vocab);
  c.weight_bytes = (static_cast<double>(m.layer_params + m.final_norm_params) + tokens * H +
                    (rows > 0 ? static_cast<double>(m.lm_head_params) : 0.0)) * m.weight_bytes;
  c.kv_read_bytes = keys * kv_per_token;
  c.kv_write_bytes = tokens * kv_per_token;
  c.logits_bytes = rows * V * m.logits_bytes * 2;
  c.linear_flops = 2 * static_cast<double>(m.linear_params) * tokens;
  if (m.moe_layers > 0) {
    const double layers = static_cast<double>(m.moe_layers), expert = static_cast<double>(m.expert_params);
    c.weight_bytes += layers * expected_experts_used(m.experts, m.experts_per_token, tokens) * expert * m.weight_bytes;
    c.linear_flops += 2 * layers * tokens * static_cast<double>(m.experts_per_token) * expert;
  }
  c.lm_head_flops = 2 * V * H * rows;
  c.attention_flops = 4.0 * static_cast<double>(m.head_dim * m.heads * m.layers) * pairs;
  return c;
}

double floor_seconds(const StepCost& cost, const Ceilings& ceil) {
  if (!(ceil.bytes_per_s > 0) || !(ceil.matmul_flops_per_s > 0))
    throw Error("roofline: the ceilings must be positive (bandwidth " + std::to_string(ceil.bytes_per_s) +
                " B/s, matmul " + std::to_string(ceil.matmul_flops_per_s) + " FLOP/s)");
  return std::max(cost.bytes() / ceil.bytes_per_s, cost.flops() / ceil.matmul_flops_per_s);
}

RooflineAccumulator::RooflineAccumulator(ModelShape shape, Ceilings ceilings)
    : shape_(shape), ceilings_(ceilings) {
  floor_seconds(StepCost{}, ceilings_);  // checks the ceilings now, not at the first step
}

void RooflineAccumulator::add_step(std::span<const SeqWork> seqs, double seconds) {
  const StepCost c = step_cost(shape_, seqs);
  total_ += c;
  floor_s_ += floor_seconds(c, ceilings_);
  if (c.bytes() / ceilings_.bytes_per_s >= c.flops() / ceilings_.matmul_flops_per_s) ++memory_bound_steps_;
  step_seconds_ += seconds;
  ++steps_;
}

void RooflineAccumulator::reset() {
  total_ = {};
  floor_s_ = step_seconds_ = 0;
  steps_ = memory_bound_steps_ = 0;
}

std::string roofline_summary(const RooflineAccumulator& r, double achieved_s) {
  const StepCost& t = r.total();
  const Ceilings& c = r.ceilings();
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "floor %.4g s (%lld of %lld steps memory-bound; %.4g GB [weights %.4g, K/V read %.4g, "
                "K/V written %.4g, logits %.4g] at %.1f GB/s; %.4g TFLOP at %.2f TFLOP/s); achieved "
                "%.4g s = %.2fx the floor, %.1f%% of it reached",
                r.floor_s(), static_cast<long long>(r.memory_bound_steps()), static_cast<long long>(r.steps()),
                t.bytes() / 1e9, t.weight_bytes / 1e9, t.kv_read_bytes / 1e9, t.kv_write_bytes / 1e9,
                t.logits_bytes / 1e9, c.bytes_per_s / 1e9, t.flops() / 1e12, c.matmul_flops_per_s / 1e12,
                achieved_s, r.floor_s() > 0 ? achieved_s / r.floor_s() : 0.0,
                achieved_s > 0 ? 100.0 * r.floor_s() / achieved_s : 0.0);
  return buf;
}

}  // namespace nanovllm::bench
