// Qwen3's per-head q/k RMSNorm followed by rotary embedding, in place on the packed qkv rows.
// Rotation uses the rotate-half layout of Hugging Face: element i pairs with i + d/2, and
//   y_i = x_i cos_i - x_{i+d/2} sin_i,   y_{i+d/2} = x_{i+d/2} cos_i + x_i sin_i.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {
namespace {
inline void norm_rotate(float* x, const float* w, float eps, const float* cs, int d) {
  if (w) {
    double ss = 0.0;
    for (int i = 0; i < d; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    for (int i = 0; i < d; ++i) x[i] = w[i] * (x[i] * inv);
  }
  const int half = d / 2;
  const float* c = cs;
  const float* s = cs + half;
  for (int i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c[i] - x2 * s[i];
    x[i + half] = x2 * c[i] + x1 * s[i];
  }
}
}  // namespace

void qk_norm_rope(float* qkv, int64_t T, int nh, int nkv, int d, const float* q_w,
                  const float* k_w, float eps, const float* cos_sin, int64_t max_pos,
                  const int32_t* positions) {
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * d;
#pragma omp parallel for schedule(static) if (T * row > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = positions[t] < 0 ? 0 : (positions[t] >= max_pos ? max_pos - 1 : positions[t]);
    const float* cs = cos_sin + p * d;
    float* r = qkv + t * row;
    for (int h = 0; h < nh; ++h) norm_rotate(r + h * d, q_w, eps, cs, d);
    for (int h = 0; h < nkv; ++h) norm_rotate(r + (nh + h) * d, k_w, eps, cs, d);
  }
}

}  // namespace nanovllm::cpu
