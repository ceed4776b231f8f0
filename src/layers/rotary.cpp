#include "layers/rotary.h"

#include <cmath>
#include <vector>

namespace nanovllm {

RotaryEmbedding::RotaryEmbedding(Backend& backend, int head_dim, int max_positions, double theta) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = static_cast<float>(
        1.0 / std::pow(theta, static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(head_dim))));
  std::vector<float> table(static_cast<size_t>(max_positions) * head_dim);
  for (int p = 0; p < max_positions; ++p) {
    float* row = table.data() + static_cast<size_t>(p) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];  // a float32 product, as in HF
      row[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      row[half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  Tensor host_f32 = backend.empty({max_positions, head_dim}, DType::F32);
  backend.copy_from_host(host_f32, table.data(), table.size() * sizeof(float));
  cos_sin_ = host_f32;
}

}  // namespace nanovllm
