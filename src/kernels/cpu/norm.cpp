// RMSNorm as Hugging Face computes it: y = x * rsqrt(mean(x^2) + eps) * w, in float32. The sum
// of squares is accumulated in double so the reference is tighter than the kernels it checks.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {
namespace {
inline void norm_row(const float* x, const float* w, float eps, float* out, int64_t H) {
  double ss = 0.0;
  for (int64_t i = 0; i < H; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(H) + eps));
  for (int64_t i = 0; i < H; ++i) out[i] = w[i] * (x[i] * inv);
}
}  // namespace

void rms_norm(const float* x, const float* w, float eps, float* out, int64_t T, int64_t H) {
#pragma omp parallel for schedule(static) if (T * H > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) norm_row(x + t * H, w, eps, out + t * H, H);
}

void add_rms_norm(float* x, float* residual, const float* w, float eps, int64_t T, int64_t H) {
#pragma omp parallel for schedule(static) if (T * H > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) {
    float* r = residual + t * H;
    float* xr = x + t * H;
    for (int64_t i = 0; i < H; ++i) r[i] += xr[i];
    norm_row(r, w, eps, xr, H);
  }
}

}  // namespace nanovllm::cpu
