// The physical floor of a run: for every step the engine actually ran, the bytes it must move and
// the FLOPs it must do, and the time those take at the device's copy bandwidth and matmul rate.
// A step cannot beat max(bytes / bandwidth, FLOPs / rate); the floor of a run is the sum over its
// steps, and "fraction of the floor reached" is floor / achieved time.
//
// Per step, with T = query tokens, R = sampled rows, C_s = keys of sequence s after the step:
//   bytes = weights (decoder layers + final norm, read once; lm_head only if R > 0; T embedding rows)
//         + K/V read   sum_s C_s * layers * 2 * nkv * d * kv_bytes
//         + K/V written T * layers * 2 * nkv * d * kv_bytes
//         + logits     R * V * 4 * 2 (float32, written by the lm_head and read by the sampler)
//   FLOPs = 2 * (decoder-layer matrix parameters) * T + 2 * V * H * R
//         + attention  4 * d * nh * layers * sum_s (causal query-key pairs of s)
// Activations between kernels are not counted: they are small next to weights and K/V in the
// steps that matter, and a fused kernel need not move them at all.
//
// Mixture-of-experts layers (Mixtral, Qwen3-MoE): the router's matrix counts as a decoder matrix;
// each token's FLOPs are its k experts' (2 * 3 H I_moe each); the experts' weights count once
// per expert a step uses, taken as the expected number of distinct experts when T tokens each
// pick k of E uniformly, E (1 - (1 - k / E)^T): the host cannot know the real routing, which
// concentrates (fewer experts, a lower floor) or spreads at most to min(E, T k).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "loader/model_config.h"
#include "runtime/backend.h"
#include "runtime/dtype.h"

namespace nanovllm::bench {

// One scheduled sequence of a step.
struct SeqWork {
  int64_t query_tokens = 0;  // tokens run through the model
  int64_t context_len = 0;   // keys the sequence has after the step (cached + new)
  bool samples = false;      // whether its logits were computed and a token sampled
};

// What the counting needs of a model, and the dtypes it runs in.
struct ModelShape {
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  int64_t linear_params = 0;     // matrix parameters of all decoder layers (MoE: without the experts)
  int64_t layer_params = 0;      // every parameter of all decoder layers (+ norms, biases; MoE: without the experts)
  // Mixture-of-experts layers: how many, experts per layer, picked per token, one expert's
  // matrix parameters (gate, up, down).
  int64_t moe_layers = 0, experts = 0, experts_per_token = 0, expert_params = 0;
  int64_t final_norm_params = 0;
  int64_t lm_head_params = 0;    // vocab * hidden (the embedding itself when tied)
  double weight_bytes = 2;       // per parameter
  double kv_bytes = 2;           // per cached K or V element
  double logits_bytes = 4;       // per logit
};

// For the Llama-style decoder every registered architecture uses (Qwen3 adds q/k norms;
// Mixtral and Qwen3-MoE have expert MLPs).
ModelShape model_shape(const ModelConfig& c, DType weight_dtype, DType kv_dtype);

struct StepCost {
  double weight_bytes = 0, kv_read_bytes = 0, kv_write_bytes = 0, logits_bytes = 0;
  double linear_flops = 0, lm_head_flops = 0, attention_flops = 0;
  double bytes() const { return weight_bytes + kv_read_bytes + kv_write_bytes + logits_bytes; }
  double flops() const { return linear_flops + lm_head_flops + attention_flops; }
  StepCost& operator+=(const StepCost& o);
};

// Query-key pairs of a causal run of q rows that ends at `context` keys: row i (0-based) sees
// context - q + i + 1 keys.
double causal_pairs(int64_t query_tokens, int64_t context_len);
// The expected number of distinct experts T tokens use when each picks k of E uniformly.
double expected_experts_used(int64_t experts, int64_t per_token, double tokens);

StepCost step_cost(const ModelShape& m, std::span<const SeqWork> seqs);
// max(bytes / bandwidth, FLOPs / matmul rate). Error if a ceiling is not positive.
double floor_seconds(const StepCost& cost, const Ceilings& ceilings);

// Sums steps as they are reported.
class RooflineAccumulator {
 public:
  RooflineAccumulator(ModelShape shape, Ceilings ceilings);
  void add_step(std::span<const SeqWork> seqs, double seconds = 0);
  void reset();

  const ModelShape& shape() const { return shape_; }
  const Ceilings& ceilings() const { return ceilings_; }
  const StepCost& total() const { return total_; }
  double floor_s() const { return floor_s_; }            // sum over steps of each step's floor
  double step_seconds() const { return step_seconds_; }  // sum of the steps' reported wall times
  int64_t steps() const { return steps_; }
  int64_t memory_bound_steps() const { return memory_bound_steps_; }

 private:
  ModelShape shape_;
  Ceilings ceilings_;
  StepCost total_;
  double floor_s_ = 0, step_seconds_ = 0;
  int64_t steps_ = 0, memory_bound_steps_ = 0;
};

// "floor 1.234 s (memory-bound 1000 of 1010 steps: 14.2 TB at 3350 GB/s; 0.35 PFLOP at 989 TFLOP/s);
//  achieved 2.468 s = 2.00x the floor, 50.0% of it reached"
std::string roofline_summary(const RooflineAccumulator& r, double achieved_s);

}  // namespace nanovllm::bench
