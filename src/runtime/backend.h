// The op interface. Model and layer code computes only through a Backend, so the same model
// file runs on the CPU reference and on CUDA. A backend is chosen once, when the engine starts.
//
// Shapes use T = tokens in the step, H = hidden size, N/K = a linear layer's output/input
// features, V = vocabulary, nh / nkv = query / key-value heads, d = head_dim.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loader/tensor_view.h"
#include "runtime/attention_metadata.h"
#include "runtime/error.h"
#include "runtime/sampling.h"
#include "runtime/tensor.h"

namespace nanovllm {

// The largest step shapes the engine will run; a backend sizes its per-step resources from them.
struct StepLimits {
  int max_tokens = 0;        // tokens in one step
  int max_seqs = 0;          // sequences in one step (rows that sample)
  int max_model_len = 0;     // the longest context
  int64_t vocab_size = 0;
  int max_logprobs = 20;     // top-N logprobs a request may ask for
};

// A recorded step (a CUDA graph) that replays with the buffers it was captured with.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
  virtual void replay() = 0;
};

// What the device can do at best, for roofline accounting (src/bench/roofline.h).
struct Ceilings {
  double bytes_per_s = 0;         // copy bandwidth: bytes read + bytes written per second
  double matmul_flops_per_s = 0;  // dense matmul rate in the compute dtype
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // The dtype parameters and activations are held in (F32 on the CPU).
  virtual DType compute_dtype() const = 0;

  // Memory. Contents of empty() are unspecified.
  virtual Tensor empty(const std::vector<int64_t>& shape, DType dtype) = 0;
  // Inside a step, a copy into long-lived memory may land as early as the previous step's
  // sampling (docs/engine.md, "Copies off the compute stream"): work queued after a sample call
  // must not read such a buffer. The step's own later work sees the copy.
  virtual void copy_from_host(Tensor& dst, const void* src, size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const Tensor& src, size_t nbytes) = 0;
  // Writes a checkpoint tensor (any floating dtype) into rows [row_offset, row_offset +
  // src.shape[0]) of `dst`, converting to dst's dtype. Used to load packed weights (qkv_proj).
  virtual void load_rows(Tensor& dst, int64_t row_offset, const TensorView& src) = 0;
  // Blocks until all queued work is done (a no-op on the CPU).
  virtual void synchronize() = 0;

  // out (T, H) = table[ids] ; ids (T,) int32, table (V, H).
  virtual void embedding(const Tensor& ids, const Tensor& table, Tensor& out) = 0;
  // out (T, H) = x / rms(x) * weight, per row.
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  // Fused residual add and norm: residual += x; x = rms_norm(residual) * weight.
  virtual void add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps) = 0;
  // out (T, N) = x (T, K) @ weight (N, K)^T [+ bias (N,)]. bias may be null.
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& out) = 0;
  // In place on qkv (T, (nh + 2 nkv) d): RMSNorm each q head with q_weight (d,) and each k head
  // with k_weight (d,), then rotate q and k (rotate-half layout) by cos_sin (max_pos, d) at
  // `positions` (T,) int32; v is untouched. cos_sin row p = [cos(p f_0..f_{d/2-1}), sin(...)].
  virtual void qk_norm_rope(Tensor& qkv, int num_heads, int num_kv_heads, int head_dim,
                            const Tensor* q_weight, const Tensor* k_weight, float eps,
                            const Tensor& cos_sin, const Tensor& positions) = 0;
  // out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:] ; gate_up (T, 2I).
  virtual void silu_and_mul(const Tensor& gate_up, Tensor& out) = 0;
  // Writes k and v (T, nkv, d) — taken from qkv (T, (nh + 2 nkv) d) — into the caches
  // (num_blocks, block_size, nkv, d) at meta.slot_mapping.
  virtual void store_kv(const Tensor& qkv, int num_heads, int num_kv_heads, int head_dim,
                        Tensor& k_cache, Tensor& v_cache, const AttentionMetadata& meta) = 0;
  // qk_norm_rope, then store_kv, as one op: the CUDA backend does both in one kernel (a decode
  // step at batch 1 is launch-bound). The default calls the two ops.
  virtual void qk_norm_rope_store_kv(Tensor& qkv, int num_heads, int num_kv_heads, int head_dim,
                                     const Tensor* q_weight, const Tensor* k_weight, float eps,
                                     const Tensor& cos_sin, Tensor& k_cache, Tensor& v_cache,
                                     const AttentionMetadata& meta) {
    qk_norm_rope(qkv, num_heads, num_kv_heads, head_dim, q_weight, k_weight, eps, cos_sin, meta.positions);
    store_kv(qkv, num_heads, num_kv_heads, head_dim, k_cache, v_cache, meta);
  }
  // ---- Fusions for small decode batches. At batch 1-8 a decode step is launch-bound: every
  // kernel costs a few µs however little it does. When fuses_norm_linear() is true, the model
  // runs the decoder's residual and norm boundaries through the three ops below instead of
  // add_rms_norm, rms_norm, linear and silu_and_mul: the residual stream is updated by the
  // product that feeds it, and the norm and the activation happen inside the products that
  // read them (the CUDA backend: one GEMV kernel each, kernels/cuda/gemv.cu).
  // `tokens`: the step's rows; `hidden`: the model's hidden size; `in_features`: the K of
  // every product that would be fused. Asked inside a step. Default: never.
  virtual bool fuses_norm_linear(int64_t tokens, int64_t hidden, const std::vector<int64_t>& in_features) const {
    (void)tokens;
    (void)hidden;
    (void)in_features;
    return false;
  }
  // out (T, N) = (rms_norm(x) * norm_weight) @ weight (N, K)^T [+ bias]; x (T, K) unchanged.
  virtual void rms_norm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                               const Tensor* bias, Tensor& out) = 0;
  // out (T, I) = silu(g) * u, [g | u] = (rms_norm(x) * norm_weight) @ weight^T, weight (2I, K)
  // packing the gate rows, then the up rows. scratch (T, 2I): [g | u], where a backend
  // materialises it (the CUDA one does not; its contents are unspecified afterwards).
  virtual void rms_norm_linear_silu(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                                    Tensor& out, Tensor& scratch) = 0;
  // residual (T, N) += x (T, K) @ weight^T [+ bias]; scratch (T, N): the product, where a
  // backend materialises it (contents unspecified afterwards).
  virtual void linear_add(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& residual,
                          Tensor& scratch) = 0;
  // Causal grouped-query attention of the q part of qkv over the paged caches.
  // out (T, nh d). Query row i of sequence s sits at position context_lens[s] - q_len + i.
  virtual void attention(const Tensor& qkv, int num_heads, int num_kv_heads, int head_dim,
                         float scale, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionMetadata& meta, Tensor& out) = 0;
  // Mixture-of-experts MLP (ModelConfig::num_experts): for each row of x (T, H), the router's
  // logits x router^T (E,), their softmax in float32, the k largest (ties: the lower expert),
  // their weights renormalised to sum 1 when `renormalize`; out (T, H) = the sum over those
  // experts e of weight * down_e(silu(gate_e x) * up_e x). gate_up (E * 2I, H) holds expert e's
  // gate rows, then its up rows, from row e * 2I; down (E * H, I) expert e's rows from e * H.
  //
  // Why this backend cannot run moe_mlp for E experts, k per row, hidden H and expert width I
  // ("" when it can): models ask when they are built, so a backend without the op, or a shape
  // its kernels refuse, fails then, naming the reason, not in the middle of a step.
  virtual std::string moe_unsupported(int E, int k, int64_t H, int64_t I) const {
    (void)E, (void)k, (void)H, (void)I;
    return "it has no mixture-of-experts kernels";
  }
  virtual void moe_mlp(const Tensor& x, const Tensor& router, const Tensor& gate_up, const Tensor& down, int k,
                       bool renormalize, Tensor& out) {
    (void)x, (void)router, (void)gate_up, (void)down, (void)k, (void)renormalize, (void)out;
    throw Error(name() + ": moe_mlp (mixture of experts) is not supported on this backend yet");
  }
  // out (R, H) = x[rows] ; rows (R,) int32. Picks the rows that need logits.
  virtual void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) = 0;
  // Samples one token per row of logits (R, V): bans, penalties, temperature, top-k, top-p,
  // min-p, then an exponential race with counter-based noise (runtime/sampling.h).
  virtual SamplerOutput sample(const Tensor& logits, const SamplingBatch& batch) = 0;
  // The same in two halves, so that the engine can queue step n + 1 before step n's tokens
  // reach the host: sample_async() queues the sampling (the batch is read before it returns),
  // collect_sample() returns the oldest uncollected results, waiting for them. At most two may
  // be outstanding (Error otherwise); a host backend samples at once and keeps the results.
  virtual void sample_async(const Tensor& logits, const SamplingBatch& batch) = 0;
  virtual SamplerOutput collect_sample() = 0;
  // The latest sample_async()'s (or sample()'s) tokens, where the backend's ops can read them:
  // int32, at least as many entries as that call's rows; valid until the next sampling call's
  // work runs (stream order), at a fixed address on a device (a graph may read it).
  virtual Tensor sampled_tokens() = 0;
  // In place: ids[t] = tokens[rows[t]] where rows[t] >= 0. ids, rows (T,) int32.
  virtual void fill_sampled_ids(Tensor& ids, const Tensor& rows, const Tensor& tokens) = 0;

  // ---- Steps, memory and graphs. The defaults are what the CPU needs: nothing. ----
  // Called once by the runner, before any step, with the engine's limits.
  virtual void reserve(const StepLimits&) {}
  // Between begin_step() and end_step(), empty() hands out step memory: a bump arena that the
  // next begin_step() reclaims, so a step never calls the device allocator. Outside a step,
  // empty() allocates long-lived memory (weights, KV cache, the runner's input buffers).
  // `decode`: every row is one decode token (a ladder-sized batch). Products in other steps use
  // one plan per weight shape whatever the row count, so a row's result does not depend on how
  // many rows share the step (prefix-cache hits and chunking leave greedy output unchanged).
  virtual void begin_step(bool decode = false) { (void)decode; }
  virtual void end_step() {}
  // Profiling: while on, step memory comes straight from the device allocator and its peak is
  // recorded. end_profile() returns the peak bytes of one step (0 where nothing is measured).
  virtual void begin_profile() {}
  virtual size_t end_profile() { return 0; }
  // Fixes the step arena's size (after profiling).
  virtual void set_step_memory(size_t) {}
  // (free, total) bytes of device memory, or nullopt where the backend uses host memory.
  virtual std::optional<std::pair<size_t, size_t>> device_memory() { return std::nullopt; }
  // Records `body` (which must only launch work on step memory and long-lived buffers) as a
  // graph. nullptr where the backend has no graphs. Called inside a step.
  virtual std::unique_ptr<StepGraph> capture(const std::function<void()>&) { return nullptr; }

  // Measures the device's copy bandwidth and matmul rate (takes about a second). Zeros mean
  // "not measured by this backend": benchmarks then need the ceilings given to them.
  virtual Ceilings measure_ceilings() { return {}; }
};

std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend on `device` (bf16 weights and activations). Error when this build has no
// CUDA backend or there is no such GPU.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);
// Whether make_cuda_backend(0) can succeed: compiled in, and a GPU is visible.
bool cuda_backend_available();
// By Config::backend's name: "cpu", "cuda", or "auto" (CUDA when available, else the CPU).
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace nanovllm
