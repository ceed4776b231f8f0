// Small-batch matrix product for decode steps: out (M, N) = x (M, K) w (N, K)^T [+ bias], M <= 8.
//
// At batch 1-8 a decoder's linear layers are a stream of weight bytes (each weight used M
// times), and cuBLASLt's tiles, made for large M, leave bandwidth unused. Here a group of
// KSPLIT warps owns kRowsPerWarp consecutive output columns n (rows of w): its lanes walk those
// weight rows in 16-byte chunks (warp w of the group takes chunks c = lane + 32 (w + KSPLIT j)),
// with kUnroll chunks per row in flight per lane, and multiply each chunk with the same 8
// columns of every x row (x is small and stays in L1/L2). Each output is one float32 sum per
// lane in K order, a warp butterfly, then (KSPLIT > 1) the group's warps added in warp order
// through shared memory, the bias, and one bf16 rounding. Bytes: N K 2 of weights once, plus
// M K 2 of x per warp from cache.
//   KSPLIT = 1: one warp per row pair, for many rows (N large).
//   KSPLIT = 4: a CTA per row pair, so a short, wide matrix (N of 1-4k, K of 2-12k) still has
//   enough warps, each with a quarter of the row, to keep ~30 KB per SM in flight.
//
// The backend times both against cuBLASLt's candidates for each decode shape and keeps the
// fastest (runtime/cuda/cublaslt_gemm.cpp), so each only runs where it wins.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 128;
constexpr int kRowsPerWarp = 2;
constexpr int kUnroll = 4;

__device__ __forceinline__ void to_float8(const uint4& u, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <int M, int KSPLIT>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                        const bf16* __restrict__ bias, bf16* __restrict__ out,
                                                        int N, int K, bool prefetch) {
  static_assert(kThreads % (32 * KSPLIT) == 0, "a CTA holds whole warp groups");
  constexpr int kStride = 32 * KSPLIT;  // chunks between one lane's consecutive chunks
  const int warp = (blockIdx.x * kThreads + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int group = warp / KSPLIT, wsub = warp % KSPLIT;
  const int n0 = group * kRowsPerWarp;
  const int chunks = K / 8;
  const uint4* wrow[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)  // a missing last row re-reads row n0 (result dropped)
    wrow[r] = reinterpret_cast<const uint4*>(w + int64_t{n0 + r < N ? n0 + r : n0} * K);
  // The weights are no earlier kernel's output, so the first pass's weight bytes head for L2
  // before the wait (launch.cuh): with PDL on, that overlaps the previous kernel. For K <= 1024
  // (KSPLIT 1) the first pass is the whole row. Without PDL (`prefetch` false: pre-Hopper
  // cards, NANOVLLM_PDL=0) nothing runs meanwhile and the prefetch only costs: measured on the
  // H200 with PDL off, Qwen3-0.6B batch 1 went 1.186 -> 1.245 ms per token with it.
  if (prefetch && n0 < N) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // a warp's 32 prefetches coalesce into 4 lines
        const int c = lane + 32 * wsub + kStride * u;
        if (c < chunks) asm volatile("prefetch.global.L2 [%0];" ::"l"(wrow[r] + c));
      }
  }
  detail::pdl_begin();  // launch.cuh: before reading x or writing out
  // KSPLIT 1: whole warps leave; KSPLIT > 1: the CTA is one group and all of it stays for the
  // barrier below (its rows exist: the grid has one CTA per row pair).
  if (n0 >= N) return;
  float acc[kRowsPerWarp][M];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
  const uint4* xrow = reinterpret_cast<const uint4*>(x);

  for (int c0 = lane + 32 * wsub; c0 < chunks; c0 += kStride * kUnroll) {
    uint4 wv[kRowsPerWarp][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + kStride * u;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) wv[r][u] = c < chunks ? __ldcs(wrow[r] + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + kStride * u;
      if (c < chunks) {
        float wf[kRowsPerWarp][8];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) to_float8(wv[r][u], wf[r]);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[8];
          to_float8(__ldg(xrow + int64_t{m} * chunks + c), xf);
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][m] = fmaf(wf[r][e], xf[e], acc[r][m]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = detail::group_sum(acc[r][m]);
  if constexpr (KSPLIT > 1) {  // the group's warps, added in warp order by warp 0
    __shared__ float part[KSPLIT][kRowsPerWarp][M];
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) part[wsub][r][m] = acc[r][m];
    __syncthreads();
    if (wsub != 0) return;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float t = part[0][r][m];
#pragma unroll
        for (int k = 1; k < KSPLIT; ++k) t += part[k][r][m];
        acc[r][m] = t;
      }
  }
  // Lane r * M + m writes out[m, n0 + r].
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (lane == r * M + m && n0 + r < N) {
        const float b = bias ? __bfloat162float(bias[n0 + r]) : 0.f;
        out[int64_t{m} * N + n0 + r] = __float2bfloat16_rn(acc[r][m] + b);
      }
}

template <int M, int KSPLIT>
void launch(const void* x, const void* w, const void* bias, void* out, int N, int K, cudaStream_t stream) {
  const int64_t warps = (int64_t{N} + kRowsPerWarp - 1) / kRowsPerWarp * KSPLIT;
  const int64_t blocks = (warps * 32 + kThreads - 1) / kThreads;
  detail::launch(gemv_kernel<M, KSPLIT>, static_cast<unsigned>(blocks), kThreads, 0, stream,
                 static_cast<const bf16*>(x), static_cast<const bf16*>(w), static_cast<const bf16*>(bias),
                 static_cast<bf16*>(out), N, K, detail::pdl_enabled());
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

template <int KSPLIT>
void launch_rows(int64_t M, const void* x, const void* w, const void* bias, void* out, int n, int k,
                 cudaStream_t stream) {
  switch (M) {
    case 1: launch<1, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 2: launch<2, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 3: launch<3, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 4: launch<4, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 5: launch<5, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 6: launch<6, KSPLIT>(x, w, bias, out, n, k, stream); break;
    case 7: launch<7, KSPLIT>(x, w, bias, out, n, k, stream); break;
    default: launch<8, KSPLIT>(x, w, bias, out, n, k, stream); break;
  }
}

}  // namespace

bool gemv_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias,
                    const void* out) {
  (void)bias;
  (void)out;
  return M >= 1 && M <= kGemvMaxRows && N >= 1 && N <= INT32_MAX && K >= 8 && K % 8 == 0 && K <= INT32_MAX &&
         detail::aligned16(x) && detail::aligned16(w);
}

void gemv(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
          cudaStream_t stream, int k_split) {
  detail::require(gemv_supported(M, N, K, x, w, bias, out), "gemv",
                  "needs 1 <= M <= " + std::to_string(kGemvMaxRows) + ", K a positive multiple of 8 and 16-byte "
                  "aligned x and w; got M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  detail::require(k_split == 1 || k_split == 4, "gemv", "k_split must be 1 or 4, got " + std::to_string(k_split));
  const int n = static_cast<int>(N), k = static_cast<int>(K);
  if (k_split == 4) launch_rows<4>(M, x, w, bias, out, n, k, stream);
  else launch_rows<1>(M, x, w, bias, out, n, k, stream);
}

}  // namespace nanovllm::gpu
