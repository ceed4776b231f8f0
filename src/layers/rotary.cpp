#include "layers/rotary.h"

#include <cmath>
#include <vector>

namespace nanovllm {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int d = c.head_dim, half = d / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = static_cast<float>(
        1.0 / std::pow(c.rope_theta, static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(d))));
  if (c.rope_type != "llama3") return inv_freq;
  // transformers' _compute_llama3_parameters, each tensor operation one float32 rounding (its
  // Python scalars taken as float32): long wavelengths divided by factor, short ones kept, a
  // linear blend in 1 / wavelength between.
  const float factor = static_cast<float>(c.rope_factor);
  const float low = static_cast<float>(c.rope_low_freq_factor);
  const double old_len = c.rope_original_max_positions;
  const float low_freq_wavelen = static_cast<float>(old_len / c.rope_low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(old_len / c.rope_high_freq_factor);
  const float two_pi = static_cast<float>(2 * M_PI);
  const float span = static_cast<float>(c.rope_high_freq_factor - c.rope_low_freq_factor);
  for (float& f : inv_freq) {
    const float wavelen = two_pi / f;
    const float scaled = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth = (static_cast<float>(old_len) / wavelen - low) / span;
    const float smoothed = (1.f - smooth) * scaled / factor + smooth * scaled;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = medium ? smoothed : scaled;
  }
  return inv_freq;
}

RotaryEmbedding::RotaryEmbedding(Backend& backend, const ModelConfig& c) {
  const int head_dim = c.head_dim, half = head_dim / 2, max_positions = c.max_position_embeddings;
  const std::vector<float> inv_freq = rope_inv_freq(c);
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
