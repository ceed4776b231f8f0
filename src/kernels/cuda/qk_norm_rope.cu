// Per-head q/k RMSNorm (Qwen3) fused with rotary embedding, in place on the packed qkv rows.
//
//   qkv (T, (nh + 2 nkv) d) bf16: q heads 0..nh-1, then k heads, then v heads, each d wide.
//   For every q head and k head x (d,) of token t, p = clamp(positions[t], 0, max_pos - 1):
//     x  <- w * (x / sqrt(mean(x^2) + eps))        w = q_weight or k_weight (d,) bf16; skipped if null
//     c_i = cos_sin[p, i], s_i = cos_sin[p, d/2 + i]  (float32 table (max_pos, d))
//     y_i       = x_i c_i - x_{i+d/2} s_i           i < d/2 (rotate-half, as Hugging Face)
//     y_{i+d/2} = x_{i+d/2} c_i + x_i s_i
//   v heads are untouched. The normed x stays float32 into the rotation; y is rounded once.
//
// qk_norm_rope_store_kv also writes the step's keys and values into the paged cache, as
// store_kv does (store_kv.cu): a k head's y goes to k_cache[slot] as well as back into qkv (the
// same bf16 bits), and the v heads, which then also get lanes, are copied bit for bit to
// v_cache[slot]. One kernel instead of two: at batch 1 a decode step is launch-bound, and this
// saves a launch per layer.
//
// Bytes: each q/k head is read once and written once, 4 T (nh + nkv) d, plus the cos/sin rows
// (from L2). A head belongs to a group of G lanes (a power of two, dividing the warp): lane l
// holds the packs l, l + G, ... of both halves, so it has x_i and x_{i+d/2} together for the
// rotation, and the sum of squares is G-lane shuffles. Two instantiations:
//   VEC = 8, MAXC = 1, G = d / 16: 16-byte accesses, for d in {16, 32, 64, 128, 256, 512}
//                                  with 16-byte aligned pointers;
//   VEC = 1, MAXC = 8, G = min(32, pow2 >= d/2): any even d <= 512, any alignment.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 128;

// Where the fused variant puts k and v (all null / 0 for plain qk_norm_rope).
struct CacheOut {
  bf16* k_cache = nullptr;  // (num_slots, nkv d)
  bf16* v_cache = nullptr;
  const int32_t* slots = nullptr;  // (T,)
  int64_t num_slots = 0;
};

// Copies VEC bf16 from src to dst as raw bits (16-byte moves when VEC = 8).
template <int VEC>
__device__ __forceinline__ void copy_bf16(bf16* dst, const bf16* src) {
  if constexpr (VEC == 8) *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  else
#pragma unroll
    for (int j = 0; j < VEC; ++j) dst[j] = src[j];
}

template <int VEC, int MAXC>
__global__ void __launch_bounds__(kThreads)
    qk_norm_rope_kernel(bf16* __restrict__ qkv, int64_t T, int nh, int nkv, int d, int G,
                        const bf16* __restrict__ q_w, const bf16* __restrict__ k_w, float eps,
                        const float* __restrict__ cos_sin, int64_t max_pos,
                        const int32_t* __restrict__ positions, const CacheOut cache) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  // Heads in qkv order (q, then k, then v): head h starts at column h * d. The v heads get
  // lanes only when they are stored.
  const bool store = cache.slots != nullptr;
  const int heads = nh + nkv + (store ? nkv : 0);
  const int64_t head = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / G;
  const int sub = threadIdx.x & (G - 1);
  const bool active = head < T * heads;
  const int64_t t = active ? head / heads : 0;
  const int h = active ? static_cast<int>(head - t * heads) : 0;
  const int half = d >> 1;
  const int nchunks = half / VEC;
  bf16* x = qkv + t * int64_t{nh + 2 * nkv} * d + int64_t{h} * d;
  // This token's cache row (null: not stored), at this k or v head's columns.
  bf16* cache_row = nullptr;
  if (store && active && h >= nh) {
    const int64_t slot = cache.slots[t];
    const bool is_v = h >= nh + nkv;
    if (slot >= 0 && slot < cache.num_slots)
      cache_row = (is_v ? cache.v_cache : cache.k_cache) + slot * int64_t{nkv} * d +
                  int64_t{h - nh - (is_v ? nkv : 0)} * d;
  }
  const bool is_v = active && h >= nh + nkv;
  if (is_v && cache_row)  // a v head (stored only): a copy. Its lanes still join group_sum below.
#pragma unroll
    for (int c = 0; c < MAXC; ++c) {
      const int idx = sub + c * G;
      if (idx >= nchunks) continue;
      copy_bf16<VEC>(cache_row + idx * VEC, x + idx * VEC);
      copy_bf16<VEC>(cache_row + half + idx * VEC, x + half + idx * VEC);
    }

  float a[MAXC][VEC], b[MAXC][VEC];  // x_i and x_{i + d/2} of this lane's packs
  float ss = 0.f;
#pragma unroll
  for (int c = 0; c < MAXC; ++c) {
    const int idx = sub + c * G;
    if (!active || is_v || idx >= nchunks) continue;
    detail::load_bf16<VEC>(x + idx * VEC, a[c]);
    detail::load_bf16<VEC>(x + half + idx * VEC, b[c]);
#pragma unroll
    for (int j = 0; j < VEC; ++j) ss += a[c][j] * a[c][j] + b[c][j] * b[c][j];
  }
  ss = detail::group_sum(ss, G);  // all 32 lanes take part; idle ones add zeros
  if (!active || is_v) return;

  const bf16* w = h < nh ? q_w : k_w;
  const float inv = w ? rsqrtf(ss / static_cast<float>(d) + eps) : 1.f;
  int64_t p = positions[t];
  p = p < 0 ? 0 : (p >= max_pos ? max_pos - 1 : p);
  const float* cs = cos_sin + p * d;
#pragma unroll
  for (int c = 0; c < MAXC; ++c) {
    const int idx = sub + c * G;
    if (idx >= nchunks) continue;
    float co[VEC], si[VEC];
    detail::load_f32<VEC>(cs + idx * VEC, co);
    detail::load_f32<VEC>(cs + half + idx * VEC, si);
    if (w) {
      float w1[VEC], w2[VEC];
      detail::load_bf16<VEC>(w + idx * VEC, w1);
      detail::load_bf16<VEC>(w + half + idx * VEC, w2);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        a[c][j] = w1[j] * (a[c][j] * inv);
        b[c][j] = w2[j] * (b[c][j] * inv);
      }
    }
    float y1[VEC], y2[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      y1[j] = a[c][j] * co[j] - b[c][j] * si[j];
      y2[j] = b[c][j] * co[j] + a[c][j] * si[j];
    }
    detail::store_bf16<VEC>(x + idx * VEC, y1);
    detail::store_bf16<VEC>(x + half + idx * VEC, y2);
    if (cache_row) {  // a k head: the same rounding, so the same bits as in qkv
      detail::store_bf16<VEC>(cache_row + idx * VEC, y1);
      detail::store_bf16<VEC>(cache_row + half + idx * VEC, y2);
    }
  }
}

int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace

namespace {

void launch_qk_norm_rope(const char* op, void* qkv, int64_t T, int nh, int nkv, int d, const void* q_weight,
                         const void* k_weight, float eps, const float* cos_sin, int64_t max_pos,
                         const int32_t* positions, const CacheOut& cache, cudaStream_t stream) {
  using detail::require;
  require(T >= 0, op, "T must be non-negative, got " + std::to_string(T));
  require(nh >= 0 && nkv >= 0 && nh + nkv > 0, op,
          "need nh >= 0, nkv >= 0 and some heads; got nh=" + std::to_string(nh) + " nkv=" + std::to_string(nkv));
  require(d >= 2 && d <= 512 && d % 2 == 0, op, "head_dim must be even and in [2, 512], got " + std::to_string(d));
  require(max_pos > 0, op, "max_pos must be positive");
  require(eps >= 0.f, op, "eps must be non-negative");
  const bool store = cache.slots != nullptr || cache.k_cache != nullptr || cache.v_cache != nullptr;
  if (store) {
    require(nkv > 0, op, "storing K/V needs nkv > 0");
    require(cache.num_slots >= 0, op, "num_slots must be non-negative");
    require(cache.k_cache != cache.v_cache, op, "k_cache and v_cache must be different buffers");
  }
  if (T == 0) return;
  require(qkv && cos_sin && positions, op, "null pointer");
  if (store) require(cache.k_cache && cache.v_cache && cache.slots, op, "null pointer");

  const int half = d / 2;
  const auto ok16 = [](const void* p) { return p == nullptr || detail::aligned16(p); };
  const bool vec = d % 16 == 0 && next_pow2(half / 8) == half / 8 && half / 8 <= 32 &&
                   ok16(qkv) && ok16(q_weight) && ok16(k_weight) && ok16(cos_sin) &&
                   ok16(cache.k_cache) && ok16(cache.v_cache);
  const int G = vec ? half / 8 : std::min(32, next_pow2(half));
  const int64_t heads = T * (nh + nkv + (store ? nkv : 0));
  const int64_t heads_per_block = kThreads / G;
  const int64_t blocks = (heads + heads_per_block - 1) / heads_per_block;
  require(blocks <= INT32_MAX, op, "too many heads for one launch");
  auto* x = static_cast<bf16*>(qkv);
  const auto* qw = static_cast<const bf16*>(q_weight);
  const auto* kw = static_cast<const bf16*>(k_weight);
  const dim3 grid(static_cast<unsigned>(blocks));
  if (vec)
    detail::launch(qk_norm_rope_kernel<8, 1>, grid, kThreads, 0, stream, x, T, nh, nkv, d, G, qw, kw, eps,
                   cos_sin, max_pos, positions, cache);
  else  // half <= 256 = 8 * 32 lanes
    detail::launch(qk_norm_rope_kernel<1, 8>, grid, kThreads, 0, stream, x, T, nh, nkv, d, G, qw, kw, eps,
                   cos_sin, max_pos, positions, cache);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void qk_norm_rope(void* qkv, int64_t T, int nh, int nkv, int d, const void* q_weight,
                  const void* k_weight, float eps, const float* cos_sin, int64_t max_pos,
                  const int32_t* positions, cudaStream_t stream) {
  launch_qk_norm_rope("qk_norm_rope", qkv, T, nh, nkv, d, q_weight, k_weight, eps, cos_sin, max_pos, positions,
                      CacheOut{}, stream);
}

void qk_norm_rope_store_kv(void* qkv, int64_t T, int nh, int nkv, int d, const void* q_weight,
                           const void* k_weight, float eps, const float* cos_sin, int64_t max_pos,
                           const int32_t* positions, void* k_cache, void* v_cache, int64_t num_slots,
                           const int32_t* slot_mapping, cudaStream_t stream) {
  CacheOut cache;
  cache.k_cache = static_cast<bf16*>(k_cache);
  cache.v_cache = static_cast<bf16*>(v_cache);
  cache.slots = slot_mapping;
  cache.num_slots = num_slots;
  launch_qk_norm_rope("qk_norm_rope_store_kv", qkv, T, nh, nkv, d, q_weight, k_weight, eps, cos_sin, max_pos,
                      positions, cache, stream);
}

}  // namespace nanovllm::gpu
