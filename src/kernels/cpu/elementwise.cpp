// Embedding lookup, SiLU-and-multiply and row gathers.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {

void embedding(const int32_t* ids, const float* table, float* out, int64_t T, int64_t V,
               int64_t H) {
  // Ids are validated against V by the caller (the engine refuses bad requests); an id out of
  // range here would be a bug, so it yields zeros rather than reading outside the table.
#pragma omp parallel for schedule(static) if (T * H > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) {
      std::memset(out + t * H, 0, sizeof(float) * H);
      continue;
    }
    std::memcpy(out + t * H, table + static_cast<int64_t>(ids[t]) * H, sizeof(float) * H);
  }
}

void silu_and_mul(const float* gate_up, float* out, int64_t T, int64_t I) {
#pragma omp parallel for schedule(static) if (T * I > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate_up + t * 2 * I;
    const float* u = g + I;
    for (int64_t i = 0; i < I; ++i) out[t * I + i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void gather_rows(const float* x, const int32_t* rows, float* out, int64_t R, int64_t T,
                 int64_t H) {
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= T) {
      std::memset(out + r * H, 0, sizeof(float) * H);
      continue;
    }
    std::memcpy(out + r * H, x + static_cast<int64_t>(rows[r]) * H, sizeof(float) * H);
  }
}

}  // namespace nanovllm::cpu
