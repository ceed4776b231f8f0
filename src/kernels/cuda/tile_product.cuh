// One CTA's tile of a tensor-core product, shared by the mixture-of-experts products (moe.cu)
// and the dense small-batch product (gemm_tc.cu): BM rows x BN output columns of
// out = a w^T, a (rows, K) and w (N, K) bf16, float32 sums, mma.sync m16n8k16 fed by ldmatrix
// from a cp.async ring of `Stages` K-slices of BK. The caller says where each tile row comes
// from and goes to (the experts gather rows; the dense product takes them in order).
//
// Sums: every KS = 1 config adds the k16 blocks of K in ascending order into one accumulator
// per output, so all KS = 1 configs give the same bits; KS > 1 configs let warp ks add blocks
// ks, ks + KS, ... and then add the warps' sums in ks order: the same bits among configs of one
// KS, other bits than KS = 1. A row's result reads only that row of a: it does not depend on
// the rows around it. Included by CUDA translation units only.
#pragma once

#include <cstdint>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/mma.cuh"

namespace nanovllm::gpu::detail {

// BM rows x BN output columns per CTA, WM x WN warps over them, and KS warps splitting each
// K-slice.
template <int BM_, int BN_, int WM_, int WN_, int KS_, int BK_, int Stages_>
struct Tiles {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, KS = KS_, BK = BK_, Stages = Stages_;
  static constexpr int kThreads = 32 * WM * WN * KS;
  static constexpr int MI = BM / WM / 16, NI = BN / WN / 8;  // m16 and n8 tiles per warp
  static constexpr int kLds = BK + 8;  // smem row stride: rows 16 bytes apart in the banks (ldmatrix)
  static_assert(MI >= 1 && NI % 2 == 0 && BK % (16 * KS) == 0);
  // Dynamic shared memory of a CTA; kSilu tiles hold gate and up rows of w.
  static constexpr size_t smem_bytes(bool silu) {
    return size_t{Stages} * (BM + (silu ? 2 : 1) * BN) * kLds * sizeof(__nv_bfloat16);
  }
};

// The tile at output columns n0.. of rows 0..BM-1, computed by all C::kThreads threads.
//   a_row(r):   row r's K values (r < BM), or nullptr: zeros, nothing read.
//   w:          the matrix, N rows of K (kSilu: the gate rows, then N up rows).
//   before_a(): called once after the first stages' weight copies are issued and before any
//               read of a: where a kernel launched with PDL waits for the one before it (the
//               weights do not depend on it, so their first copies overlap its tail).
//   out_row(r): where row r's N outputs go (bf16), or nullptr: dropped.
// kSilu: out = bf16(silu(bf16 g)) * bf16(u) for the gate sums g and up sums u; else bf16(sum).
// K % 8 == 0 and N % 8 == 0; a, w and the output rows 16-byte aligned.
template <typename C, bool kSilu, typename ARow, typename BeforeA, typename OutRow>
__device__ __forceinline__ void tile_product(unsigned char* smem_raw, const ARow& a_row, const __nv_bfloat16* w,
                                             int64_t N, int64_t K, int64_t n0, const BeforeA& before_a,
                                             const OutRow& out_row) {
  using bf16 = __nv_bfloat16;
  constexpr int BM = C::BM, BN = C::BN, BK = C::BK, kLds = C::kLds, kThreads = C::kThreads;
  constexpr int MI = C::MI, NI = C::NI;
  constexpr int kBRows = kSilu ? 2 * BN : BN;
  bf16* sa = reinterpret_cast<bf16*>(smem_raw);  // Stages x (BM x kLds)
  bf16* sb = sa + C::Stages * BM * kLds;         // Stages x (kBRows x kLds)
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // Each thread copies fixed rows of every stage: 16-byte chunk c = tid + i * kThreads is row
  // c / kCpr, column (c % kCpr) * 8 of the tile.
  constexpr int kCpr = BK / 8, kRowsPerPass = kThreads / kCpr;
  constexpr int kAChunks = (BM * kCpr + kThreads - 1) / kThreads, kBChunks = kBRows * kCpr / kThreads;
  static_assert(kThreads % kCpr == 0 && kBRows * kCpr % kThreads == 0);
  const int col8 = (tid % kCpr) * 8;
  const bf16* b_src[kBChunks];
  bool b_ok[kBChunks];
#pragma unroll
  for (int i = 0; i < kBChunks; ++i) {
    const int r = tid / kCpr + i * kRowsPerPass;
    const int64_t n = n0 + (kSilu ? r % BN : r);
    b_ok[i] = n < N;
    b_src[i] = w + ((kSilu && r >= BN ? N : 0) + (b_ok[i] ? n : 0)) * K;
  }
  auto load_b = [&](int stage, int64_t k0) {
    const bool k_ok = k0 + col8 < K;  // K % 8 == 0: a chunk is all in or all out
    bf16* db = sb + stage * kBRows * kLds;
#pragma unroll
    for (int i = 0; i < kBChunks; ++i) {
      const int r = tid / kCpr + i * kRowsPerPass;
      const bool ok = b_ok[i] && k_ok;
      cp_async16(db + r * kLds + col8, ok ? b_src[i] + k0 + col8 : w, ok);
    }
  };
  const int ktiles = static_cast<int>((K + BK - 1) / BK);
  // The weights' first stages, then the wait, then a's: cp.async groups complete in order, so
  // group 0 (all of these weight copies and a's stage 0) is the only one that grows.
#pragma unroll
  for (int s = 0; s < C::Stages - 1; ++s)
    if (s < ktiles) load_b(s, int64_t{s} * BK);
  before_a();

  const bf16* a_src[kAChunks];
#pragma unroll
  for (int i = 0; i < kAChunks; ++i) {
    const int r = tid / kCpr + i * kRowsPerPass;
    a_src[i] = r < BM ? a_row(r) : nullptr;
  }
  auto load_a = [&](int stage, int64_t k0) {
    const bool k_ok = k0 + col8 < K;
    bf16* da = sa + stage * BM * kLds;
#pragma unroll
    for (int i = 0; i < kAChunks; ++i) {
      const int r = tid / kCpr + i * kRowsPerPass;
      if (BM * kCpr % kThreads != 0 && r >= BM) continue;
      const bool ok = a_src[i] != nullptr && k_ok;
      cp_async16(da + r * kLds + col8, ok ? a_src[i] + k0 + col8 : w, ok);
    }
  };

  float acc[MI][NI][4] = {};    // [m16 tile][n8 tile][fragment]: gate (or the plain product)
  float acc_u[MI][NI][4] = {};  // kSilu: up
  const int plane = warp % (C::WM * C::WN), ks = warp / (C::WM * C::WN);
  const int wm = (plane / C::WN) * (BM / C::WM), wn = (plane % C::WN) * (BN / C::WN);
#pragma unroll
  for (int s = 0; s < C::Stages - 1; ++s) {
    if (s < ktiles) load_a(s, int64_t{s} * BK);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<C::Stages - 2>();
    __syncthreads();  // stage kt landed for all; stage kt - 1 (refilled next) is consumed
    if (kt + C::Stages - 1 < ktiles) {
      const int stage = (kt + C::Stages - 1) % C::Stages;
      const int64_t k0 = int64_t{kt + C::Stages - 1} * BK;
      load_a(stage, k0);
      load_b(stage, k0);
    }
    cp_async_commit();
    const bf16* ta = sa + (kt % C::Stages) * BM * kLds;
    const bf16* tb = sb + (kt % C::Stages) * kBRows * kLds;
#pragma unroll
    for (int kk = ks * 16; kk < BK; kk += 16 * C::KS) {
      uint32_t af[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
        ldmatrix_x4(af[mi], ta + (wm + mi * 16 + lane % 16) * kLds + kk + (lane / 16) * 8);
#pragma unroll
      for (int half = 0; half < (kSilu ? 2 : 1); ++half) {
        float(&c)[MI][NI][4] = half ? acc_u : acc;
#pragma unroll
        for (int nj = 0; nj < NI / 2; ++nj) {  // n8 tiles 2 nj and 2 nj + 1
          uint32_t bf[4];
          ldmatrix_x4(bf, tb + (half * BN + wn + nj * 16 + lane % 8 + (lane / 16) * 8) * kLds + kk +
                              ((lane / 8) % 2) * 8);
#pragma unroll
          for (int mi = 0; mi < MI; ++mi) {
            mma_bf16(c[mi][2 * nj], af[mi], bf[0], bf[1]);
            mma_bf16(c[mi][2 * nj + 1], af[mi], bf[2], bf[3]);
          }
        }
      }
    }
  }
  cp_async_wait<0>();

  if constexpr (C::KS > 1) {
    // The K-splitting warps' sums into warp ks = 0's, in ks order, through the ring's memory.
    constexpr int kVals = MI * NI * 4 * (kSilu ? 2 : 1);
    static_assert((C::KS - 1) * C::WM * C::WN * kVals * 32 * 4 <= C::Stages * (BM + kBRows) * kLds * 2);
    float* red = reinterpret_cast<float*>(smem_raw) + plane * (C::KS - 1) * kVals * 32;
    // Calls f(value, slot) for each of this thread's sums, slot v at red[32 v + lane].
    const auto each_sum = [&](auto&& f) {
      int v = 0;
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
          for (int fr = 0; fr < 4; ++fr) {
            f(acc[mi][ni][fr], 32 * v++);
            if (kSilu) f(acc_u[mi][ni][fr], 32 * v++);
          }
    };
    __syncthreads();  // every warp is done reading the ring
    if (ks > 0) {
      float* mine = red + (ks - 1) * kVals * 32 + lane;
      each_sum([&](float& a, int at) { mine[at] = a; });
    }
    __syncthreads();
    if (ks > 0) return;
    for (int o = 0; o < C::KS - 1; ++o) {
      const float* theirs = red + o * kVals * 32 + lane;
      each_sum([&](float& a, int at) { a += theirs[at]; });
    }
  }

  // Fragment (mi, ni): rows wm + mi * 16 + lane / 4 (+ 8), columns wn + ni * 8 + 2 (lane % 4), + 1.
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      bf16* out = out_row(wm + mi * 16 + lane / 4 + h * 8);
      if (out == nullptr) continue;
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
        const int64_t n = n0 + wn + ni * 8 + 2 * (lane % 4);
        if (n >= N) continue;  // N % 8 == 0: both columns in or out
        float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
        if (kSilu) {
          const auto round = [](float x) { return __bfloat162float(__float2bfloat16_rn(x)); };
          v0 = silu_bf16(round(v0)) * round(acc_u[mi][ni][2 * h]);
          v1 = silu_bf16(round(v1)) * round(acc_u[mi][ni][2 * h + 1]);
        }
        *reinterpret_cast<uint32_t*>(out + n) = pack_bf16x2(v0, v1);
      }
    }
}

}  // namespace nanovllm::gpu::detail
