#include "loader/dummy_weights.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/model_presets.h"
#include "loader/hf_cache.h"
#include "runtime/dtype.h"

namespace nanovllm {
namespace {

uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Uniform on [-a, a] has standard deviation a / sqrt(3).
constexpr float kHalfWidth = 0.02f * 1.7320508f;
// Elements generated per load_rows call: bounds the host buffer (8 MiB of bf16).
constexpr int64_t kChunkElems = int64_t{1} << 22;

}  // namespace

bool is_model_preset(const std::string& model) { return bench::find_model_preset(model) != nullptr; }

ModelConfig dummy_model_config(const std::string& model) {
  if (const auto* p = bench::find_model_preset(model)) return bench::preset_model_config(*p);
  return load_model_config(resolve_model_path(model));
}

void fill_dummy_weights(const ParamRegistry& params, Backend& backend, uint64_t seed) {
  std::vector<uint16_t> host;
  params.for_each([&](const std::string& name, Tensor& target, const std::vector<int64_t>& shape,
                      int64_t row_offset) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const int64_t rows = shape.empty() ? 1 : shape[0];
    const int64_t row_elems = rows ? numel / rows : 0;
    if (numel == 0) return;
    enum { kRandom, kOne, kZero } kind = kRandom;
    if (name.ends_with("norm.weight")) kind = kOne;
    else if (name.ends_with(".bias")) kind = kZero;
    const uint64_t key = mix64(seed ^ hash_name(name));
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(row_elems, 1));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, rows - r0);
      const int64_t n = nr * row_elems, first = r0 * row_elems;
      host.resize(static_cast<size_t>(n));
      uint16_t* out = host.data();
#pragma omp parallel for schedule(static) if (n > (int64_t{1} << 16))
      for (int64_t k = 0; k < n; ++k) {
        float v = kind == kOne ? 1.f : 0.f;
        if (kind == kRandom) {
          const uint64_t h = mix64(key + static_cast<uint64_t>(first + k) * 0x9e3779b97f4a7c15ULL);
          const float u = static_cast<float>(h >> 40) * (1.f / 16777216.f);  // [0, 1)
          v = (2.f * u - 1.f) * kHalfWidth;
        }
        out[k] = f32_to_bf16(v);
      }
      TensorView view;
      view.dtype = DType::BF16;
      view.shape = shape.empty() ? std::vector<int64_t>{1} : shape;
      view.shape[0] = nr;
      view.data = reinterpret_cast<const std::byte*>(host.data());
      view.nbytes = static_cast<size_t>(n) * 2;
      view.source = "dummy weights";
      backend.load_rows(target, row_offset + r0, view);
      backend.synchronize();  // the host buffer is refilled next: no copy may still read it
    }
  });
}

std::unique_ptr<CausalLM> load_dummy_model(const std::string& model, Backend& backend, uint64_t seed) {
  auto m = create_model(dummy_model_config(model), backend);
  fill_dummy_weights(m->params(), backend, seed);
  return m;
}

}  // namespace nanovllm
