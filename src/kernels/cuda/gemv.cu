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
//
// Fused variants (gemv_fused), for the decoder's pre-norm boundaries at batch 1-8, where each
// separate kernel costs a few µs of launch and drain whatever it does (docs/performance.md):
//   norm:     out = rms_norm(x) W^T: x is a raw residual row; each lane also sums x^2 over the
//             chunks it reads (the group reads the whole row, so the group's sum is the row's),
//             multiplies the chunks by the norm weight g, and the sum is scaled by
//             1 / sqrt(mean x^2 + eps) at the end. No separate norm kernel, no extra pass: but
//             the normed activations are never rounded to bf16, so the bits differ from
//             rms_norm then gemv (by a bf16 rounding of the inputs: closer to exact, not further).
//   add:      out += x W^T (+ bias) in place, rounded as add_rms_norm rounds: bf16(out + bf16(y)).
//             Each output element is read and written by one lane, so no other CTA races it.
//   silu:     out (M, N) = silu(g) * u, with g, u the products of weight rows n and N + n (a
//             packed gate/up matrix of 2N rows): a group takes rows n and N + n for one output
//             column (the plain kernel's two rows, so the same loads and registers), computes
//             the activation once, as silu_and_mul does, and the (M, 2N) product never goes to
//             memory. (A first version gave a group four rows, two columns: half the warps. At
//             Qwen3-8B's gate/up, batch 1, it took 66.3 µs per call against 61.1 + 4.6 µs for
//             the unfused product and silu_and_mul, in an eager op profile.)
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 128;
constexpr int kRowsPerWarp = 2;  // weight rows per group (and output columns, but for kSilu)
constexpr int kUnroll = 4;

enum class Epi { kStore, kAdd, kSilu };

struct Params {
  const bf16* x;
  const bf16* w;
  const bf16* bias;
  bf16* out;
  const bf16* norm_w;  // NORM only
  float eps;
  int N, K;
  bool prefetch;
  // EXPERTS (gemv_experts): pair y = blockIdx.y reads x row y / x_div and expert
  // experts[y]'s matrix (w_rows rows from row experts[y] * w_rows), and writes out row y.
  const int32_t* experts;
  int64_t w_rows;
  int x_div;
};

__device__ __forceinline__ void to_float8(const uint4& u, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <int M, int KSPLIT, bool NORM, Epi EPI, bool EXPERTS = false>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const Params p) {
  static_assert(kThreads % (32 * KSPLIT) == 0, "a CTA holds whole warp groups");
  constexpr int kStride = 32 * KSPLIT;  // chunks between one lane's consecutive chunks
  // Output columns per group: kSilu's two weight rows (gate n, up N + n) make one column, so
  // its groups load, and its warps hold, exactly what the plain kernel's do.
  constexpr int kRows = kRowsPerWarp;
  constexpr int kCols = EPI == Epi::kSilu ? 1 : kRowsPerWarp;
  const int N = p.N, K = p.K;
  const int warp = (blockIdx.x * kThreads + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int group = warp / KSPLIT, wsub = warp % KSPLIT;
  const int n0 = group * kCols;
  const int chunks = K / 8;
  // The operands: the whole x, w and out, or (EXPERTS) this pair's, which needs the routing
  // the kernel before wrote: so the wait comes first and nothing is prefetched.
  const bf16* wb = p.w;
  const bf16* xb = p.x;
  bf16* ob = p.out;
  if constexpr (EXPERTS) {
    static_assert(M == 1, "one row per (row, expert) pair");
    detail::pdl_begin();
    const int64_t pair = blockIdx.y;
    wb += int64_t{__ldg(p.experts + pair)} * p.w_rows * K;
    xb += pair / p.x_div * K;
    ob += pair * N;
  }
  const uint4* wrow[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {  // a missing last column re-reads column n0 (result dropped)
    const int64_t row = EPI == Epi::kSilu ? n0 + int64_t{r} * N : (n0 + r < N ? n0 + r : n0);
    wrow[r] = reinterpret_cast<const uint4*>(wb + row * K);
  }
  // The weights are no earlier kernel's output, so the first pass's weight bytes head for L2
  // before the wait (launch.cuh): with PDL on, that overlaps the previous kernel. For K <= 1024
  // (KSPLIT 1) the first pass is the whole row. Without PDL (`prefetch` false: pre-Hopper
  // cards, NANOVLLM_PDL=0) nothing runs meanwhile and the prefetch only costs: measured on the
  // H200 with PDL off, Qwen3-0.6B batch 1 went 1.186 -> 1.245 ms per token with it.
  if (!EXPERTS && p.prefetch && n0 < N) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // a warp's 32 prefetches coalesce into 4 lines
        const int c = lane + 32 * wsub + kStride * u;
        if (c < chunks) asm volatile("prefetch.global.L2 [%0];" ::"l"(wrow[r] + c));
      }
  }
  if constexpr (!EXPERTS) detail::pdl_begin();  // launch.cuh: before reading x or touching out
  // KSPLIT 1: whole warps leave; KSPLIT > 1: the CTA is one group and all of it stays for the
  // barrier below (its rows exist: the grid has one CTA per row pair).
  if (n0 >= N) return;
  // kAdd: the residual element this lane will update, loaded now so that its latency hides
  // under the weight stream instead of adding a round trip to the end (lane c * M + m owns
  // out[m, n0 + c]; for KSPLIT > 1 the group's warp 0 writes).
  float prev = 0.f;
  if constexpr (EPI == Epi::kAdd) {
    const int c = lane / M, m = lane % M;
    if (wsub == 0 && c < kCols && n0 + c < N) prev = __bfloat162float(ob[int64_t{m} * N + n0 + c]);
  }
  float acc[kRows][M];
  float ss[M];  // NORM: this lane's part of sum(x^2) per row
#pragma unroll
  for (int m = 0; m < M; ++m) {
    ss[m] = 0.f;
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r][m] = 0.f;
  }
  const uint4* xrow = reinterpret_cast<const uint4*>(xb);
  const uint4* grow = reinterpret_cast<const uint4*>(p.norm_w);

  for (int c0 = lane + 32 * wsub; c0 < chunks; c0 += kStride * kUnroll) {
    uint4 wv[kRows][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + kStride * u;
#pragma unroll
      for (int r = 0; r < kRows; ++r) wv[r][u] = c < chunks ? __ldcs(wrow[r] + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + kStride * u;
      if (c < chunks) {
        float wf[kRows][8];
#pragma unroll
        for (int r = 0; r < kRows; ++r) to_float8(wv[r][u], wf[r]);
        float gf[8];
        if constexpr (NORM) to_float8(__ldg(grow + c), gf);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[8];
          to_float8(__ldg(xrow + int64_t{m} * chunks + c), xf);
          if constexpr (NORM) {
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              ss[m] = fmaf(xf[e], xf[e], ss[m]);
              xf[e] *= gf[e];  // exact: a product of two bf16 fits a float
            }
          }
#pragma unroll
          for (int r = 0; r < kRows; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][m] = fmaf(wf[r][e], xf[e], acc[r][m]);
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if constexpr (NORM) ss[m] = detail::group_sum(ss[m]);
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r][m] = detail::group_sum(acc[r][m]);
  }
  if constexpr (KSPLIT > 1) {  // the group's warps, added in warp order by warp 0
    __shared__ float part[KSPLIT][kRows + 1][M];  // row kRows: the sums of squares
    if (lane == 0)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        part[wsub][kRows][m] = ss[m];
#pragma unroll
        for (int r = 0; r < kRows; ++r) part[wsub][r][m] = acc[r][m];
      }
    __syncthreads();
    if (wsub != 0) return;
#pragma unroll
    for (int r = 0; r <= kRows; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float t = part[0][r][m];
#pragma unroll
        for (int k = 1; k < KSPLIT; ++k) t += part[k][r][m];
        if (r < kRows) acc[r][m] = t;
        else ss[m] = t;
      }
  }
  // Lane c * M + m writes out[m, n0 + c].
#pragma unroll
  for (int c = 0; c < kCols; ++c)
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (lane == c * M + m && n0 + c < N) {
        // NORM: the row's 1 / rms, as rms_norm computes it (rms_norm.cu), on this group's sum.
        const float inv = NORM ? rsqrtf(ss[m] / static_cast<float>(K) + p.eps) : 1.f;
        const int64_t o = int64_t{m} * N + n0 + c;
        if constexpr (EPI == Epi::kSilu) {
          const float bg = p.bias ? __bfloat162float(p.bias[n0]) : 0.f;
          const float bu = p.bias ? __bfloat162float(p.bias[N + n0]) : 0.f;
          const float g = __bfloat162float(__float2bfloat16_rn(acc[0][m] * inv + bg));
          const float u = __bfloat162float(__float2bfloat16_rn(acc[1][m] * inv + bu));
          ob[o] = __float2bfloat16_rn(detail::silu_bf16(g) * u);
        } else {
          const float b = p.bias ? __bfloat162float(p.bias[n0 + c]) : 0.f;
          float y = acc[c][m] * inv + b;
          if constexpr (EPI == Epi::kAdd) y = __bfloat162float(__float2bfloat16_rn(y)) + prev;
          ob[o] = __float2bfloat16_rn(y);
        }
      }
}

template <int M, int KSPLIT, bool NORM, Epi EPI>
void launch(const Params& p, cudaStream_t stream) {
  constexpr int cols = EPI == Epi::kSilu ? 1 : kRowsPerWarp;  // output columns per group
  const int64_t warps = (int64_t{p.N} + cols - 1) / cols * KSPLIT;
  const int64_t blocks = (warps * 32 + kThreads - 1) / kThreads;
  detail::launch(gemv_kernel<M, KSPLIT, NORM, EPI>, static_cast<unsigned>(blocks), kThreads, 0, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

template <int KSPLIT, Epi EPI>
void launch_experts(const Params& p, int64_t pairs, cudaStream_t stream) {
  constexpr int cols = EPI == Epi::kSilu ? 1 : kRowsPerWarp;
  const int64_t warps = (int64_t{p.N} + cols - 1) / cols * KSPLIT;
  const dim3 grid(static_cast<unsigned>((warps * 32 + kThreads - 1) / kThreads), static_cast<unsigned>(pairs));
  detail::launch(gemv_kernel<1, KSPLIT, false, EPI, true>, grid, kThreads, 0, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

template <int KSPLIT>
void launch_plain(int64_t M, const Params& p, cudaStream_t stream) {
  switch (M) {
    case 1: launch<1, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 2: launch<2, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 3: launch<3, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 4: launch<4, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 5: launch<5, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 6: launch<6, KSPLIT, false, Epi::kStore>(p, stream); break;
    case 7: launch<7, KSPLIT, false, Epi::kStore>(p, stream); break;
    default: launch<8, KSPLIT, false, Epi::kStore>(p, stream); break;
  }
}

// The fused variants exist for the decode ladder's row counts (1, 2, 4, 8) only.
template <int KSPLIT, bool NORM, Epi EPI>
void launch_fused(int64_t M, const Params& p, cudaStream_t stream) {
  switch (M) {
    case 1: launch<1, KSPLIT, NORM, EPI>(p, stream); break;
    case 2: launch<2, KSPLIT, NORM, EPI>(p, stream); break;
    case 4: launch<4, KSPLIT, NORM, EPI>(p, stream); break;
    default: launch<8, KSPLIT, NORM, EPI>(p, stream); break;
  }
}

template <int KSPLIT>
void launch_fused(int64_t M, bool norm, GemvEpilogue epi, const Params& p, cudaStream_t stream) {
  if (norm && epi == GemvEpilogue::kSiluMul) launch_fused<KSPLIT, true, Epi::kSilu>(M, p, stream);
  else if (norm && epi == GemvEpilogue::kStore) launch_fused<KSPLIT, true, Epi::kStore>(M, p, stream);
  else if (!norm && epi == GemvEpilogue::kAddInto) launch_fused<KSPLIT, false, Epi::kAdd>(M, p, stream);
  else if (!norm && epi == GemvEpilogue::kSiluMul) launch_fused<KSPLIT, false, Epi::kSilu>(M, p, stream);
  else launch_plain<KSPLIT>(M, p, stream);  // no norm, kStore (gemv_fused refuses norm with kAddInto)
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
  gemv_fused(x, w, bias, out, M, N, K, stream, k_split, nullptr, 0.f, GemvEpilogue::kStore);
}

bool gemv_fused_rows(int64_t M) { return M == 1 || M == 2 || M == 4 || M == 8; }

void gemv_fused(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
                cudaStream_t stream, int k_split, const void* norm_weight, float eps, GemvEpilogue epi) {
  const char* op = norm_weight || epi != GemvEpilogue::kStore ? "gemv_fused" : "gemv";
  detail::require(gemv_supported(M, N, K, x, w, bias, out), op,
                  "needs 1 <= M <= " + std::to_string(kGemvMaxRows) + ", K a positive multiple of 8 and 16-byte "
                  "aligned x and w; got M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  detail::require(k_split == 1 || k_split == 4, op, "k_split must be 1 or 4, got " + std::to_string(k_split));
  detail::require(x && w && out, op, "null pointer");
  const bool fused = norm_weight || epi != GemvEpilogue::kStore;
  if (fused) {
    detail::require(gemv_fused_rows(M), op, "fused variants take M in {1, 2, 4, 8}, got " + std::to_string(M));
    detail::require(!norm_weight || detail::aligned16(norm_weight), op, "the norm weight must be 16-byte aligned");
    detail::require(eps >= 0.f, op, "eps must be non-negative");
    detail::require(epi != GemvEpilogue::kSiluMul || 2 * N <= INT32_MAX, op, "2N too large");
    detail::require(!(norm_weight && epi == GemvEpilogue::kAddInto), op,
                    "a normed input with the add epilogue is not a variant the decoder uses");
  }
  Params p{static_cast<const bf16*>(x), static_cast<const bf16*>(w), static_cast<const bf16*>(bias),
           static_cast<bf16*>(out), static_cast<const bf16*>(norm_weight), eps, static_cast<int>(N),
           static_cast<int>(K), detail::pdl_enabled(), nullptr, 0, 1};
  const bool norm = norm_weight != nullptr;
  if (k_split == 4) launch_fused<4>(M, norm, epi, p, stream);
  else launch_fused<1>(M, norm, epi, p, stream);
}

void gemv_experts(const void* x, int x_div, const void* w, int64_t w_rows, const int32_t* experts, void* out,
                  int64_t pairs, int64_t N, int64_t K, bool silu, cudaStream_t stream) {
  const char* op = "gemv_experts";
  detail::require(x && w && experts && out, op, "null pointer");
  detail::require(pairs >= 1 && pairs <= 65535 && x_div >= 1, op,
                  "needs 1 <= pairs <= 65535 and x_div >= 1, got " + std::to_string(pairs) + ", " +
                      std::to_string(x_div));
  detail::require(N >= 1 && K >= 8 && K % 8 == 0 && (silu ? 2 * N : N) <= w_rows && w_rows * K <= INT64_MAX / 2 &&
                      N <= INT32_MAX && K <= INT32_MAX,
                  op, "bad sizes N=" + std::to_string(N) + " K=" + std::to_string(K) + " w_rows=" + std::to_string(w_rows));
  detail::require(detail::aligned16(x) && detail::aligned16(w), op, "x and w must be 16-byte aligned");
  Params p{static_cast<const bf16*>(x), static_cast<const bf16*>(w), nullptr, static_cast<bf16*>(out), nullptr, 0.f,
           static_cast<int>(N), static_cast<int>(K), false, experts, w_rows, x_div};
  // Long rows (K >= 3 N: Mixtral's down product) split K over a CTA's warps, as the dense GEMV
  // does for short, wide matrices; otherwise a warp per column pair.
  const bool ksplit = K >= 3 * N;
  if (silu) ksplit ? launch_experts<4, Epi::kSilu>(p, pairs, stream) : launch_experts<1, Epi::kSilu>(p, pairs, stream);
  else ksplit ? launch_experts<4, Epi::kStore>(p, pairs, stream) : launch_experts<1, Epi::kStore>(p, pairs, stream);
}

}  // namespace nanovllm::gpu
