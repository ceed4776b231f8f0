// Shared by the paged prefill attention kernels (paged_attention_prefill.cu: the mma.sync
// kernels; paged_attention_prefill_wgmma.cu: the Hopper warpgroup-MMA kernel): the launch
// parameters, the slot -> (sequence, packed-row tile) map, the async-copy helpers and the
// per-tile online softmax. Every kernel runs softmax_tile on 16-row slices in the same order,
// and the tile map is a function of the sequence alone, so a row's result never depends on the
// batch around it. Included by CUDA translation units only.
#pragma once

#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/mma.cuh"
#include "runtime/cuda_check.h"

#include <cmath>
#include <cstdint>

namespace nanovllm::gpu::prefill {

using detail::bf16;

struct PrefillParams {
  const bf16* qkv;             // (T, (nh + 2 nkv) d)
  const bf16* k_cache;         // (num_blocks, bs, nkv, d)
  const bf16* v_cache;         // (num_blocks, bs, nkv, d)
  const int32_t* cu_seqlens_q; // (num_seqs + 1,)
  const int32_t* context_lens; // (num_seqs,)
  const int32_t* block_tables; // (num_seqs, max_blocks)
  bf16* out;                   // (T, nh d)
  int64_t qkv_stride;          // (nh + 2 nkv) d
  int64_t num_blocks;
  int nh, nkv, group, num_seqs;
  int block_size, block_shift;  // block_shift = log2(bs) when bs is a power of two, else -1
  int max_blocks;
  float scale_log2;             // scale * log2(e)
};

// The tensor-core and async-copy helpers (mma.cuh), by their short names here.
using detail::cp_async16;
using detail::cp_async_commit;
using detail::cp_async_wait;
using detail::ldmatrix_x4;
using detail::ldmatrix_x4_trans;
using detail::mma_bf16;
using detail::pack_bf16x2;
using detail::smem_addr;

// 2^x on the SFU (ex2(-inf) = +0), the same instruction exp2f becomes under fast math.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// First packed-row tile slot of sequence s (see the header).
template <int BM>
__device__ __forceinline__ int64_t tile_start(const PrefillParams& p, int s) {
  return int64_t{p.cu_seqlens_q[s]} * p.group / BM + s;
}

// The sequence owning `slot` and the packed rows [r0, r_end) of its tile; false when the slot
// has no tile (the whole CTA exits). A sequence's tiles are handed out last first.
struct Tile {
  int s, q_begin, q_len, r0, r_end;
};
template <int BM>
__device__ __forceinline__ bool find_tile(const PrefillParams& p, int64_t slot, Tile& tl) {
  int lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile_start<BM>(p, mid) <= slot) lo = mid; else hi = mid - 1;
  }
  tl.s = lo;
  tl.q_begin = p.cu_seqlens_q[lo];
  tl.q_len = p.cu_seqlens_q[lo + 1] - tl.q_begin;
  const int rows = tl.q_len * p.group;
  const int ntiles = (rows + BM - 1) / BM;
  const int64_t local = slot - tile_start<BM>(p, lo);
  if (tl.q_len <= 0 || local < 0 || local >= ntiles) return false;
  tl.r0 = (ntiles - 1 - static_cast<int>(local)) * BM;
  tl.r_end = min(rows, tl.r0 + BM);
  return true;
}

// context_lens[s] clamped to what the block table can address.
__device__ __forceinline__ int clamped_context(const PrefillParams& p, int s) {
  const int64_t n = p.context_lens[s], cap = int64_t{p.max_blocks} * p.block_size;
  return static_cast<int>(n < 0 ? 0 : (n > cap ? cap : n));
}

// The keys of a tile's rows: row i of the sequence (query q_begin + i) sees keys
// < key_base + i + 1; the tile walks the n_kv key tiles of BN keys that its last row sees.
struct TileKeys {
  int ctx, key_base, n_kv;
};
template <int BN>
__device__ __forceinline__ TileKeys tile_keys(const PrefillParams& p, const Tile& tl) {
  const int ctx = clamped_context(p, tl.s);
  const int key_base = ctx - tl.q_len;
  const int k_last = key_base + (tl.r_end - 1) / p.group + 1;
  return {ctx, key_base, k_last > 0 ? (k_last + BN - 1) / BN : 0};
}

// 1 / (a row's softmax denominator) at the end of the key walk: each of the 4 lanes holding the
// row has a partial sum l; 0 for a row that saw no key (written as zeros).
__device__ __forceinline__ float row_inv_denominator(float l) {
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  return l > 0.f ? 1.f / l : 0.f;
}

// One key tile's online-softmax step (base 2) for the 16 rows of one m16 slice. On entry sc holds
// the raw scores q . k of keys key0 .. key0 + BN - 1; on return, p = 2^(scale q.k - m) (exactly
// 0 where masked), with (m_run, l_run) updated and alpha the factor by which the slice's output
// accumulator must be rescaled. Both d = 128 variants run this same code on every slice, so a
// row's bits do not depend on the variant, tile or warp that computed it; the products are
// __fmul_rn so that no instantiation can contract them into an FMA differently.
template <int BN, bool kMaskPass = false>
__device__ __forceinline__ void softmax_tile(float (&sc)[BN / 8][4], float (&m_run)[2],
                                             float (&l_run)[2], float (&alpha)[2], bool masked,
                                             int key0, const int (&limit)[2], float scale_log2,
                                             int lane) {
  float mx[2] = {-INFINITY, -INFINITY};
  if constexpr (kMaskPass) {
    // The mask as a pass of its own, run only by the tiles that reach past some row's last
    // visible key (the diagonal). Folded into the scaling loop (below), ptxas predicates the
    // compare and select into every tile; the mma.sync kernels keep that form, which costs them
    // no registers (the pass made one of them spill). Same bits either way.
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) sc[nb][j] = __fmul_rn(sc[nb][j], scale_log2);
    if (masked) {
      const int rel[2] = {limit[0] - key0 - (lane % 4) * 2, limit[1] - key0 - (lane % 4) * 2};
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (nb * 8 + (j & 1) >= rel[j >> 1]) sc[nb][j] = -INFINITY;
    }
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) mx[j >> 1] = fmaxf(mx[j >> 1], sc[nb][j]);
  } else {
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float v = __fmul_rn(sc[nb][j], scale_log2);
        if (masked && key0 + nb * 8 + (lane % 4) * 2 + (j & 1) >= limit[j >> 1]) v = -INFINITY;
        sc[nb][j] = v;
        mx[j >> 1] = fmaxf(mx[j >> 1], v);
      }
  }
  float m_use[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
    const float m_new = fmaxf(m_run[h], mx[h]);
    m_use[h] = m_new == -INFINITY ? 0.f : m_new;  // nothing visible yet: p = 0, no NaN
    // Exactly 1 when the maximum did not move (the common case once a row has seen a few
    // tiles); exp2(-inf) = 0 when the row saw nothing before.
    alpha[h] = m_run[h] == m_use[h] ? 1.f : fast_exp2(m_run[h] - m_use[h]);
    m_run[h] = m_new;
    l_run[h] = __fmul_rn(l_run[h], alpha[h]);
  }
#pragma unroll
  for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float e = fast_exp2(sc[nb][j] - m_use[j >> 1]);
      sc[nb][j] = e;
      l_run[j >> 1] += e;
    }
}

// Slots (see the header) times KV heads: the 1-D grid of either configuration.
inline unsigned grid_size(const PrefillParams& p, int64_t T, int bm) {
  return static_cast<unsigned>((T * p.group / bm + p.num_seqs) * p.nkv);
}

// Raises a kernel's dynamic shared memory limit: a host call, not a stream operation, made once
// per instantiation at its first launch, normally before any graph capture.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  NANOVLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(bytes)));
  // All of the unified L1 / shared memory as shared (the copies bypass L1), so that the kernels
  // meant to run two CTAs per SM get them.
  NANOVLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                           cudaSharedmemCarveoutMaxShared));
}

// The d = 128 Hopper kernel (paged_attention_prefill_wgmma.cu): true when this build holds
// sm_90a code for it and the current device can run it.
bool wgmma_available();
void launch_wgmma_d128(const PrefillParams& p, int64_t T, cudaStream_t stream);

}  // namespace nanovllm::gpu::prefill
