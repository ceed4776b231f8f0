// out (T, N) = x (T, K) @ w (N, K)^T [+ bias]. Both operands are read along K, so every output
// is a dot product of two contiguous rows. A 4 x 2 tile of outputs shares each loaded vector of
// x and w; eight-wide vector accumulators (split in two on pre-AVX machines) keep the adds
// independent. target_clones gives an AVX2+FMA version to the machines that have it while the
// binary still runs on any x86-64.
#pragma GCC diagnostic ignored "-Wpsabi"  // v8f never crosses an ABI boundary: all inline
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {
namespace {

typedef float v8f __attribute__((vector_size(32)));

__attribute__((always_inline)) inline v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline float hsum(v8f v) {
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

constexpr int kTileM = 4, kTileN = 2;

#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define NANOVLLM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NANOVLLM_CLONES
#endif

// Computes outputs for rows [m0, m0+mt) of x and rows [n0, n0+nt) of w (mt <= 4, nt <= 2).
NANOVLLM_CLONES
void tile(const float* x, const float* w, float* out, int64_t m0, int mt, int64_t n0, int nt,
          int64_t N, int64_t K) {
  v8f acc[kTileM][kTileN] = {};
  const float* xr[kTileM];
  const float* wr[kTileN];
  for (int i = 0; i < kTileM; ++i) xr[i] = x + (m0 + std::min(i, mt - 1)) * K;
  for (int j = 0; j < kTileN; ++j) wr[j] = w + (n0 + std::min(j, nt - 1)) * K;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    v8f a[kTileM], b[kTileN];
    for (int i = 0; i < kTileM; ++i) a[i] = load8(xr[i] + k);
    for (int j = 0; j < kTileN; ++j) b[j] = load8(wr[j] + k);
    for (int i = 0; i < kTileM; ++i)
      for (int j = 0; j < kTileN; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < mt; ++i)
    for (int j = 0; j < nt; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += xr[i][kk] * wr[j][kk];
      out[(m0 + i) * N + n0 + j] = s;
    }
}

}  // namespace

void linear(const float* x, const float* w, const float* bias, float* out, int64_t T, int64_t N,
            int64_t K) {
  const int64_t n_tiles = (N + kTileN - 1) / kTileN;
  // Parallel over output features: each thread streams its own slice of the weights once.
#pragma omp parallel for schedule(static) if (T * N * K > 8 * kParallelMinWork)
  for (int64_t nt = 0; nt < n_tiles; ++nt) {
    const int64_t n0 = nt * kTileN;
    const int nn = static_cast<int>(std::min<int64_t>(kTileN, N - n0));
    for (int64_t m0 = 0; m0 < T; m0 += kTileM)
      tile(x, w, out, m0, static_cast<int>(std::min<int64_t>(kTileM, T - m0)), n0, nn, N, K);
  }
  if (bias) {
#pragma omp parallel for schedule(static) if (T * N > kParallelMinWork)
    for (int64_t m = 0; m < T; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * N + n] += bias[n];
  }
}

}  // namespace nanovllm::cpu
