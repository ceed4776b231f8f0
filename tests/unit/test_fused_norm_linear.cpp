// The decoder's fused small-batch path (Backend::fuses_norm_linear): the model's wiring of the
// residual stream through rms_norm_linear, rms_norm_linear_silu and linear_add, checked on the
// CPU, where those ops are the ops they stand for. The CUDA backend takes this path in decode
// steps of 1-8 rows; its kernels are checked in tests/gpu (CudaGemm.FusedGemv*).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "engine/prompt_logits.h"
#include "forwarding_backend.h"
#include "models/model.h"
#include "runtime/backend.h"

namespace nanovllm {
namespace {

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;

// The CPU backend, asking the model to fuse at every row count, and counting the fused ops.
class CpuFusing final : public test::ForwardingBackend {
 public:
  bool fuses_norm_linear(int64_t, int64_t, const std::vector<int64_t>& in_features) const override {
    return !in_features.empty();
  }
  void rms_norm_linear(const Tensor& x, const Tensor& nw, float eps, const Tensor& w, const Tensor* b,
                       Tensor& out) override {
    ++norm_linear;
    inner_->rms_norm_linear(x, nw, eps, w, b, out);
  }
  void rms_norm_linear_silu(const Tensor& x, const Tensor& nw, float eps, const Tensor& w, Tensor& out,
                            Tensor& scratch) override {
    ++norm_linear_silu;
    inner_->rms_norm_linear_silu(x, nw, eps, w, out, scratch);
  }
  void linear_add(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& r, Tensor& scratch) override {
    ++linear_adds;
    inner_->linear_add(x, w, b, r, scratch);
  }
  void add_rms_norm(Tensor& x, Tensor& r, const Tensor& w, float eps) override {
    ++add_rms_norms;
    inner_->add_rms_norm(x, r, w, eps);
  }
  int norm_linear = 0, norm_linear_silu = 0, linear_adds = 0, add_rms_norms = 0;
};

TEST(FusedNormLinear, ModelLogitsMatchTheUnfusedPath) {
  std::mt19937 rng(5);
  for (const char* name : {"qwen3-tied-f32-g2-d64", "qwen3-tied-f32-g2-d64-bias", "qwen3-untied-f32-g1-d128-sharded"}) {
    const auto dir = kFixtures / "models" / name;
    auto plain = make_cpu_backend();
    CpuFusing fusing;
    auto model_plain = load_model(dir, *plain);
    auto model_fused = load_model(dir, fusing);
    const int64_t vocab = model_plain->config().vocab_size;
    const int layers = model_plain->config().num_hidden_layers;
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
    std::vector<std::vector<int32_t>> prompts;
    for (int len : {1, 7, 40}) {
      std::vector<int32_t> p(static_cast<size_t>(len));
      for (auto& t : p) t = tok(rng);
      prompts.push_back(p);
    }
    const PromptLogits a = prompt_logits(*model_plain, *plain, prompts);
    const PromptLogits b = prompt_logits(*model_fused, fusing, prompts);
    // One forward over all prompts: per layer one qkv and one gate/up product, two residual adds.
    EXPECT_EQ(fusing.norm_linear, layers) << name;
    EXPECT_EQ(fusing.norm_linear_silu, layers) << name;
    EXPECT_EQ(fusing.linear_adds, 2 * layers) << name;
    EXPECT_EQ(fusing.add_rms_norms, 0) << name << ": the fused path still ran an unfused norm";
    ASSERT_EQ(a.logits.size(), b.logits.size());
    for (size_t i = 0; i < a.logits.size(); ++i) {
      ASSERT_EQ(a.logits[i].size(), b.logits[i].size());
      double worst = 0, scale = 0;
      for (size_t k = 0; k < a.logits[i].size(); ++k) {
        worst = std::max(worst, double(std::fabs(a.logits[i][k] - b.logits[i][k])));
        scale = std::max(scale, double(std::fabs(a.logits[i][k])));
      }
      // The same float32 ops in the same order, but for where the residual add happens.
      EXPECT_LE(worst, 1e-5 * std::max(1.0, scale)) << name << " prompt " << i;
    }
  }
}

}  // namespace
}  // namespace nanovllm
