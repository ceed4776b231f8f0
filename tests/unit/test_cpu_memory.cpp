// The CPU backend's memory budget: a model too large for the machine is an Error naming the
// sizes, raised before its pages are touched (Linux would grant the allocation and then kill
// the process). NANOVLLM_CPU_MEMORY_MB stands in for MemAvailable here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "runtime/backend.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

std::string alloc_error(Backend& b, int64_t floats) {
  try {
    b.empty({floats}, DType::F32);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(CpuMemory, AllocationsPastTheBudgetAreRefusedByName) {
  const ScopedEnv env("NANOVLLM_CPU_MEMORY_MB", "1");
  auto b = make_cpu_backend();
  EXPECT_THAT(alloc_error(*b, 512 * 1024),
              HasSubstr("cpu backend: out of memory: 2097152 more bytes would bring its tensors to 2 MiB, over "
                        "the 1 MiB available"));
  {
    Tensor first = b->empty({160 * 1024}, DType::F32);  // 640 KiB of the 1 MiB
    EXPECT_THAT(alloc_error(*b, 160 * 1024), HasSubstr("to 1.25 MiB, over the 1 MiB available"));
    Tensor second = b->empty({90 * 1024}, DType::F32);  // 360 KiB: still inside
  }
  // Freed tensors give their bytes back, also when they outlive the backend.
  Tensor kept = b->empty({200 * 1024}, DType::F32);
  b.reset();
  EXPECT_EQ(kept.numel(), 200 * 1024);
}

TEST(CpuMemory, BudgetSettingMustBeAPositiveNumber) {
  for (const char* bad : {"0", "-5", "12x", ""}) {
    const ScopedEnv env("NANOVLLM_CPU_MEMORY_MB", bad);
    try {
      make_cpu_backend();
      ADD_FAILURE() << "accepted NANOVLLM_CPU_MEMORY_MB='" << bad << "'";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("NANOVLLM_CPU_MEMORY_MB must be a positive whole number of MiB"));
    }
  }
}

TEST(CpuMemory, WithoutTheSettingTheMachinesAvailableMemoryIsTheBudget) {
  if (!std::ifstream("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo: no budget to test";
  unsetenv("NANOVLLM_CPU_MEMORY_MB");
  auto b = make_cpu_backend();
  // Far more than any machine this runs on: refused by the budget, not granted by overcommit.
  EXPECT_THAT(alloc_error(*b, int64_t{1} << 42), HasSubstr("cpu backend: out of memory"));
  EXPECT_EQ(b->empty({1024}, DType::F32).numel(), 1024);
}

}  // namespace
}  // namespace nanovllm
