// GPU tests skip themselves (visibly, as SKIPPED) where there is no GPU, so CI stays honest.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/cuda_device.h"
#include "gpu_test_util.h"
#include "runtime/dtype.h"

namespace nanovllm {
namespace {

TEST(CudaDevice, ReportsTheCard) {
  REQUIRE_GPU();
  const std::string s = cuda_device_summary(0);
  std::printf("device 0: %s\n", s.c_str());
  EXPECT_NE(s.find("sm_"), std::string::npos);
}

TEST(CudaConvert, F32ToBf16MatchesCpuBitForBit) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{1} << 20}) {
    std::vector<float> in(n);
    std::normal_distribution<float> normal(0.f, 100.f);
    for (auto& x : in) x = normal(rng);
    // Edge cases: ties, subnormals, infinities, NaN, the largest finite values.
    const float specials[] = {0.f, -0.f, 1.00390625f, 1.01171875f, 1e-40f, -1e-42f,
                              std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(), 3.4e38f, -3.4e38f};
    for (size_t i = 0; i < std::size(specials) && i < n; ++i) in[i] = specials[i];
    std::vector<uint16_t> out(n, 0xdead);  // poisoned: every element must be written
    cuda_convert_f32_to_bf16(in.data(), out.data(), n);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint16_t want = f32_to_bf16(in[i]);
      const bool both_nan = std::isnan(bf16_to_f32(want)) && std::isnan(bf16_to_f32(out[i]));
      if (out[i] != want && !both_nan) ++bad;
    }
    EXPECT_EQ(bad, 0u) << "n=" << n;
  }
}

}  // namespace
}  // namespace nanovllm
