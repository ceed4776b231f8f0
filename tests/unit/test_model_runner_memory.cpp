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
#include "forwarding_backend.h"

namespace nanovllm {
namespace {

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;

// The CPU backend with a small, fixed "device memory" (so the runner takes its GPU path).
class CpuWithDeviceMemory final : public test::ForwardingBackend {
 public:
  std::string name() const override { return "cpu with device memory"; }
  std::optional<std::pair<size_t, size_t>> device_memory() override {
    return std::make_pair(size_t{60} << 20, size_t{64} << 20);  // 60 of 64 MiB free
  }
  int profiled_steps = 0;
  void begin_profile() override { ++profiled_steps; }
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
