// The runner's memory sizing on a device backend, run on the CPU: a backend that is the CPU
// backend but reports device memory, so the runner profiles its largest steps and sizes the
// KV cache from that memory, as it does on a GPU.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "engine/model_runner.h"
#include "models/model.h"
#include "nanovllm/config.h"
#include "runtime/backend.h"

namespace nanovllm {
namespace {

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;

// The CPU backend with a small, fixed "device memory" (so the runner takes its GPU path).
class CpuWithDeviceMemory final : public Backend {
 public:
  std::string name() const override { return "cpu with device memory"; }
  Device device() const override { return cpu_->device(); }
  DType compute_dtype() const override { return cpu_->compute_dtype(); }
  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override { return cpu_->empty(shape, dtype); }
  void copy_from_host(Tensor& dst, const void* src, size_t n) override { cpu_->copy_from_host(dst, src, n); }
  void copy_to_host(void* dst, const Tensor& src, size_t n) override { cpu_->copy_to_host(dst, src, n); }
  void load_rows(Tensor& dst, int64_t row, const TensorView& src) override { cpu_->load_rows(dst, row, src); }
  void synchronize() override { cpu_->synchronize(); }
  void embedding(const Tensor& ids, const Tensor& table, Tensor& out) override { cpu_->embedding(ids, table, out); }
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override { cpu_->rms_norm(x, w, eps, out); }
  void add_rms_norm(Tensor& x, Tensor& r, const Tensor& w, float eps) override { cpu_->add_rms_norm(x, r, w, eps); }
  void linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& out) override { cpu_->linear(x, w, b, out); }
  void qk_norm_rope(Tensor& qkv, int nh, int nkv, int d, const Tensor* qw, const Tensor* kw, float eps,
                    const Tensor& cos_sin, const Tensor& positions) override {
    cpu_->qk_norm_rope(qkv, nh, nkv, d, qw, kw, eps, cos_sin, positions);
  }
  void silu_and_mul(const Tensor& gate_up, Tensor& out) override { cpu_->silu_and_mul(gate_up, out); }
  void store_kv(const Tensor& qkv, int nh, int nkv, int d, Tensor& kc, Tensor& vc,
                const AttentionMetadata& meta) override {
    cpu_->store_kv(qkv, nh, nkv, d, kc, vc, meta);
  }
  void attention(const Tensor& qkv, int nh, int nkv, int d, float scale, const Tensor& kc, const Tensor& vc,
                 const AttentionMetadata& meta, Tensor& out) override {
    cpu_->attention(qkv, nh, nkv, d, scale, kc, vc, meta, out);
  }
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override { cpu_->gather_rows(x, rows, out); }
  SamplerOutput sample(const Tensor& logits, const SamplingBatch& batch) override {
    return cpu_->sample(logits, batch);
  }
  std::optional<std::pair<size_t, size_t>> device_memory() override {
    return std::make_pair(size_t{60} << 20, size_t{64} << 20);  // 60 of 64 MiB free
  }
  int profiled_steps = 0;
  void begin_profile() override { ++profiled_steps; }

 private:
  std::unique_ptr<Backend> cpu_ = make_cpu_backend();
};

// max_num_seqs below max_num_batched_tokens / max_model_len: the profiled prefill step used to
// hold ceil(2048 / 64) = 32 sequences, more than one step may, and the runner refused to start
// ("exceeds the runner's capacity"). It now profiles at most max_num_seqs sequences of
// max_model_len tokens.
TEST(ModelRunnerMemory, OneSequenceAtATimeStarts) {
  CpuWithDeviceMemory backend;
  auto model = load_model(kFixtures / "models" / "qwen3-tied-f32-g2-d64", backend);
  for (int seqs : {1, 2, 8}) {
    Config c;
    c.max_num_seqs = seqs;
    c.max_num_batched_tokens = 2048;
    c.max_model_len = 64;
    c.kvcache_block_size = 16;
    c.gpu_memory_utilization = 0.9;
    std::unique_ptr<ModelRunner> runner;
    ASSERT_NO_THROW(runner = std::make_unique<ModelRunner>(*model, backend, c)) << "max_num_seqs " << seqs;
    EXPECT_GT(runner->num_blocks(), 0);
    EXPECT_GT(runner->step_memory_bytes(), 0u);
  }
  EXPECT_EQ(backend.profiled_steps, 3);
}

}  // namespace
}  // namespace nanovllm
