// Helpers shared by the unit and GPU tests: reading reference tensors and comparing results.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loader/tensor_view.h"
#include "runtime/dtype.h"

namespace nanovllm::test {

// An int64 tensor (token ids as torch saves them) as int32.
inline std::vector<int32_t> ints(const TensorView& v) {
  std::vector<int32_t> out(static_cast<size_t>(v.numel()));
  for (size_t k = 0; k < out.size(); ++k) {
    int64_t x;
    std::memcpy(&x, v.data + k * 8, 8);
    out[k] = static_cast<int32_t>(x);
  }
  return out;
}

// Any float tensor, widened to float32 exactly.
inline std::vector<float> floats(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  convert_to_f32(v.dtype, v.data, out.data(), out.size());
  return out;
}

// ||ours - ref|| / ||ref||, in double.
inline double rel_error(const float* ours, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(ours[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}
inline double rel_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  return rel_error(ours.data(), ref.data(), std::min(ours.size(), ref.size()));
}

}  // namespace nanovllm::test
