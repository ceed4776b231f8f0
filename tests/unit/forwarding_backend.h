// A Backend that passes every op to another one (the CPU backend by default). Tests derive from
// it to change one behaviour, e.g. report device memory or take the model's fused decode path.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/backend.h"

namespace nanovllm::test {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner = make_cpu_backend()) : inner_(std::move(inner)) {}
  std::string name() const override { return "forwarding to " + inner_->name(); }
  Device device() const override { return inner_->device(); }
  DType compute_dtype() const override { return inner_->compute_dtype(); }
  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override { return inner_->empty(shape, dtype); }
  void copy_from_host(Tensor& dst, const void* src, size_t n) override { inner_->copy_from_host(dst, src, n); }
  void copy_to_host(void* dst, const Tensor& src, size_t n) override { inner_->copy_to_host(dst, src, n); }
  void load_rows(Tensor& dst, int64_t row, const TensorView& src) override { inner_->load_rows(dst, row, src); }
  void synchronize() override { inner_->synchronize(); }
  void embedding(const Tensor& ids, const Tensor& table, Tensor& out) override { inner_->embedding(ids, table, out); }
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override { inner_->rms_norm(x, w, eps, out); }
  void add_rms_norm(Tensor& x, Tensor& r, const Tensor& w, float eps) override { inner_->add_rms_norm(x, r, w, eps); }
  void linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& out) override { inner_->linear(x, w, b, out); }
  void qk_norm_rope(Tensor& qkv, int nh, int nkv, int d, const Tensor* qw, const Tensor* kw, float eps,
                    const Tensor& cos_sin, const Tensor& positions) override {
    inner_->qk_norm_rope(qkv, nh, nkv, d, qw, kw, eps, cos_sin, positions);
  }
  void silu_and_mul(const Tensor& gate_up, Tensor& out) override { inner_->silu_and_mul(gate_up, out); }
  void store_kv(const Tensor& qkv, int nh, int nkv, int d, Tensor& kc, Tensor& vc,
                const AttentionMetadata& meta) override {
    inner_->store_kv(qkv, nh, nkv, d, kc, vc, meta);
  }
  bool fuses_norm_linear(int64_t tokens, int64_t hidden, const std::vector<int64_t>& in_features) const override {
    return inner_->fuses_norm_linear(tokens, hidden, in_features);
  }
  void rms_norm_linear(const Tensor& x, const Tensor& nw, float eps, const Tensor& w, const Tensor* b,
                       Tensor& out) override {
    inner_->rms_norm_linear(x, nw, eps, w, b, out);
  }
  void rms_norm_linear_silu(const Tensor& x, const Tensor& nw, float eps, const Tensor& w, Tensor& out,
                            Tensor& scratch) override {
    inner_->rms_norm_linear_silu(x, nw, eps, w, out, scratch);
  }
  void linear_add(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& r, Tensor& scratch) override {
    inner_->linear_add(x, w, b, r, scratch);
  }
  void attention(const Tensor& qkv, int nh, int nkv, int d, float scale, const Tensor& kc, const Tensor& vc,
                 const AttentionMetadata& meta, Tensor& out) override {
    inner_->attention(qkv, nh, nkv, d, scale, kc, vc, meta, out);
  }
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override { inner_->gather_rows(x, rows, out); }
  std::string moe_unsupported(int E, int k, int64_t H, int64_t I) const override {
    return inner_->moe_unsupported(E, k, H, I);
  }
  void moe_mlp(const Tensor& x, const Tensor& router, const Tensor& gate_up, const Tensor& down, int k,
               bool renormalize, Tensor& out) override {
    inner_->moe_mlp(x, router, gate_up, down, k, renormalize, out);
  }
  SamplerOutput sample(const Tensor& logits, const SamplingBatch& batch) override {
    return inner_->sample(logits, batch);
  }
  void sample_async(const Tensor& logits, const SamplingBatch& batch) override { inner_->sample_async(logits, batch); }
  SamplerOutput collect_sample() override { return inner_->collect_sample(); }
  Tensor sampled_tokens() override { return inner_->sampled_tokens(); }
  void fill_sampled_ids(Tensor& ids, const Tensor& rows, const Tensor& tokens) override {
    inner_->fill_sampled_ids(ids, rows, tokens);
  }
  void reserve(const StepLimits& limits) override { inner_->reserve(limits); }
  void begin_step(bool decode) override { inner_->begin_step(decode); }
  void end_step() override { inner_->end_step(); }
  void begin_profile() override { inner_->begin_profile(); }
  size_t end_profile() override { return inner_->end_profile(); }
  void set_step_memory(size_t bytes) override { inner_->set_step_memory(bytes); }
  std::optional<std::pair<size_t, size_t>> device_memory() override { return inner_->device_memory(); }

 protected:
  std::unique_ptr<Backend> inner_;
};

}  // namespace nanovllm::test
