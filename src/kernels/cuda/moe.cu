// The mixture-of-experts MLP on the GPU (ops.h, gpu::moe_mlp), as the CPU reference defines it
// (kernels/cpu/moe.cpp): route each row to its k experts, run each expert's SwiGLU over the rows
// that chose it, sum the experts' outputs weighted by the routing weights.
//
// Everything runs on the device from the router's logits on, with grids sized from T alone, so
// a decode step with experts is captured in a CUDA graph like any other:
//   1. moe_route:   one warp per row: float32 softmax of the E logits, the k largest (ties to
//                   the lower expert, as the CPU's stable sort), optionally renormalised.
//   2. moe_align:   one CTA: each expert's (row, choice) slots, grouped by expert, each group
//                   padded to a multiple of BM so a tile of BM rows belongs to one expert;
//                   the expert of every tile (-1 past the last), and each slot's padded row.
//   3. moe_gemm<gather, silu>: act = silu(g) * u, [g | u] = x[rows] gate_up_e^T, one tile of
//                   BM rows x BN columns per CTA (Tiles below: mma.sync m16n8k16, float32 sums,
//                   a cp.async ring): the gate and up columns of a tile are computed together,
//                   so [g | u] never reaches memory.
//   4. moe_gemm<plain>: y = act down_e^T, the same tiles.
//   5. moe_combine: out[t] = sum over j < k of weight[t, j] * y[row of (t, j)], in j's order.
// A row's result does not depend on the rows around it: a tile row's sums read only that row,
// in a fixed order, and the combine's order is the row's own choice order. (Where a slot lands
// inside its expert's group depends on atomics; that changes which tile row computes it, not
// its bits.)
//
// Rounding follows Hugging Face's bf16 experts: g and u are rounded to bf16, silu(g) is
// rounded before the product (activation.cuh), act and y are bf16; the weighted sum over the k
// experts is float32, rounded once.
#include <algorithm>
#include <string>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/tile_product.cuh"
#include "runtime/cuda_check.h"
#include "runtime/env_switch.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

// The products' tiles (tile_product.cuh). Every KS = 1 config gives the same bits, so Medium
// and Large give the same bits and any step may pick either by size; Small (KS = 4) sums in
// another order, so only decode steps, whose plans may depend on their size (docs/engine.md,
// "Batch invariance"), pick it.
using detail::Tiles;
// Decode, up to ~16 rows per expert: many small CTAs, each streaming a narrow slice of an
// expert's weights (the weights are the bytes; the MMAs mostly pad). Two shapes, with the same
// K split (warp ks sums k16 blocks ks, ks + 4, ...: the same bits), picked per product by K:
//   - K >= 4,096: 16 x 16 tiles, 256-wide K-slices (512 contiguous bytes of each weight row
//     per stage). Mixtral 8x7B (H200, CudaMoePerf.LayerTiming) at 1 / 8 / 32 rows: 230 / 770 /
//     856 us, against 318 / 886 / 1,027 us with SmallWide: longer runs per weight row.
//   - shorter K: 16 x 32 tiles, 64-wide slices, a 6-deep ring. Qwen3-30B-A3B (K 2,048 and 768)
//     at 128 rows: 433 us, against 476 us with 256-wide slices (whose rings barely fill at K =
//     768); at 8 / 32 rows 186-205 / 370-395 us, against 177 / 362 (within the spread).
using SmallWide = Tiles<16, 32, 1, 1, 4, 64, 6>;
using SmallLong = Tiles<16, 16, 1, 1, 4, 256, 4>;
constexpr int64_t kLongK = 4096;
using MediumTiles = Tiles<64, 64, 2, 2, 1, 64, 3>;
// ~128+ rows per expert (prefill): twice the reuse of each loaded element.
using LargeTiles = Tiles<128, 128, 2, 4, 1, 32, 4>;
// kAuto resolved: the tile config of each product (SmallWide / SmallLong share BM).
struct TileChoice {
  MoeTiles gate_up, down;
  int bm() const {
    // kGemv lays its pairs out as 16-row tiles would (rows >= pairs), and reads no grouping.
    return gate_up == MoeTiles::kMedium ? MediumTiles::BM : gate_up == MoeTiles::kLarge ? LargeTiles::BM : SmallWide::BM;
  }
};
TileChoice pick_tiles(int64_t T, int E, int k, int64_t H, int64_t I, bool decode, MoeTiles forced) {
  if (forced != MoeTiles::kAuto) return {forced, forced};
  const int64_t slots = T * k, rows_per_expert = slots / std::max<int64_t>(1, std::min<int64_t>(E, slots));
  // A few (row, expert) pairs whose experts are (nearly) all different: each pair a GEMV, which
  // streams its expert's rows at the dense GEMV's rate, where a 16-row tile holding 1-2 real
  // rows is mostly fixed cost. Up to 16 pairs: one row (its k experts are distinct), or more
  // rows while pairs <= E / 4 (two pairs on one expert read it twice). H200
  // (CudaMoePerf.LayerTiming, tiles -> GEMV): Qwen3-30B-A3B 1 / 2 rows 48.0 -> 34.8 / 71.8 ->
  // 51.9 us; Mixtral 8x7B 1 row 226 -> 178 us, but 2 rows (4 pairs on 8 experts) 302 -> 334 us
  // and 8 rows 683 -> 1,274 us.
  static const bool gemv_on = env_switch("NANOVLLM_MOE_GEMV", true);
  if (decode && gemv_on && slots <= kMoeGemvMaxPairs && (T == 1 || 4 * slots <= E))
    return {MoeTiles::kGemv, MoeTiles::kGemv};
  if (decode && rows_per_expert <= 16) {
    const auto by_k = [](int64_t K) { return K >= kLongK ? MoeTiles::kSmallLong : MoeTiles::kSmallWide; };
    return {by_k(H), by_k(I)};  // gate/up reads K = H, down K = I
  }
  const MoeTiles t = rows_per_expert >= 128 ? MoeTiles::kLarge : MoeTiles::kMedium;
  return {t, t};
}

constexpr int kMaxExperts = 1024;
constexpr int kMaxPerLane = kMaxExperts / 32;
constexpr int kMaxK = 32;

// ---- 1. routing ----
// Row t's routing, by one warp: logits l (E,) -> ids_t, w_t (k,). E <= 32 kPerLane.
template <int kPerLane>
__device__ __forceinline__ void route_row(const bf16* __restrict__ l, int E, int k, bool renormalize,
                                          int32_t* __restrict__ ids_t, float* __restrict__ w_t, int lane) {
  float p[kPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? __bfloat162float(l[e]) : -INFINITY;
    mx = fmaxf(mx, p[i]);
  }
  for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  float z = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    p[i] = lane + 32 * i < E ? expf(p[i] - mx) : 0.f;
    z += p[i];
  }
  z = detail::group_sum(z);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) p[i] = lane + 32 * i < E ? p[i] / z : -1.f;  // -1: never picked
  // k rounds of a warp argmax (larger p, then the lower expert); the winner leaves the race.
  float chosen_p = 0.f, sum = 0.f;
  int chosen_e = 0;
  for (int j = 0; j < k; ++j) {
    float bp = -2.f;
    int be = INT32_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (p[i] > bp) bp = p[i], be = lane + 32 * i;  // i ascending: ties keep the lower expert
    for (int off = 16; off > 0; off >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, bp, off);
      const int oe = __shfl_xor_sync(0xffffffffu, be, off);
      if (op > bp || (op == bp && oe < be)) bp = op, be = oe;
    }
    be = be < E ? be : 0;  // only NaN logits pick nothing; keep the id in range regardless
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (lane + 32 * i == be) p[i] = -1.f;
    if (lane == j) chosen_p = bp, chosen_e = be;
    sum += bp;
  }
  if (lane < k) {
    ids_t[lane] = chosen_e;
    w_t[lane] = renormalize ? chosen_p / sum : chosen_p;
  }
}

__global__ void __launch_bounds__(128)
    moe_route_kernel(const bf16* __restrict__ logits, int64_t T, int E, int k, bool renormalize,
                     int32_t* __restrict__ ids, float* __restrict__ weights) {
  detail::pdl_begin();
  const int64_t t = int64_t{blockIdx.x} * (blockDim.x / 32) + threadIdx.x / 32;
  if (t < T) route_row<kMaxPerLane>(logits + t * E, E, k, renormalize, ids + t * k, weights + t * k, threadIdx.x & 31);
}

// ---- 2. grouping the slots by expert ----
// slot s = t * k + j. sorted[r] = the slot at padded row r (-1: padding), tile_expert[i] = the
// expert of tile i (-1 past the last tile, up to max_tiles), slot_row[s] = the row of slot s.
// One CTA; E <= blockDim.x.
__device__ __forceinline__ void align_slots(const int32_t* __restrict__ ids, int64_t slots, int E, int bm,
                                            int32_t* __restrict__ sorted, int32_t* __restrict__ tile_expert,
                                            int max_tiles, int32_t* __restrict__ slot_row) {
  __shared__ int count[kMaxExperts];
  __shared__ int start[kMaxExperts + 1];
  __shared__ int warp_total[32];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int e = tid; e < E; e += nt) count[e] = 0;
  __syncthreads();
  for (int64_t s = tid; s < slots; s += nt) slot_row[s] = atomicAdd(&count[ids[s]], 1);  // rank in its group
  __syncthreads();
  // Exclusive scan of the padded group sizes: one expert per thread.
  const int lane = tid & 31, warp = tid >> 5;
  const int padded = tid < E ? (count[tid] + bm - 1) / bm * bm : 0;
  int incl = padded;
  for (int off = 1; off < 32; off <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += v;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = lane < nt / 32 ? warp_total[lane] : 0;
    for (int off = 1; off < 32; off <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += v;
    }
    warp_total[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const int excl = incl - padded + (warp > 0 ? warp_total[warp - 1] : 0);
  if (tid < E) start[tid] = excl;
  if (tid == E - 1) start[E] = excl + padded;
  __syncthreads();
  const int rows = start[E];
  for (int r = tid; r < rows; r += nt) sorted[r] = -1;
  for (int i = tid; i < max_tiles; i += nt) tile_expert[i] = -1;
  __syncthreads();
  for (int e = tid; e < E; e += nt)
    for (int i = start[e] / bm; i < start[e + 1] / bm; ++i) tile_expert[i] = e;
  for (int64_t s = tid; s < slots; s += nt) {
    const int r = start[ids[s]] + slot_row[s];
    sorted[r] = static_cast<int32_t>(s);
    slot_row[s] = r;
  }
}

__global__ void __launch_bounds__(1024)
    moe_align_kernel(const int32_t* __restrict__ ids, int64_t slots, int E, int bm, int32_t* __restrict__ sorted,
                     int32_t* __restrict__ tile_expert, int max_tiles, int32_t* __restrict__ slot_row) {
  detail::pdl_begin();
  align_slots(ids, slots, E, bm, sorted, tile_expert, max_tiles, slot_row);
}

// Both in one CTA for small decode steps: one launch fewer per layer (each is a few µs in a
// batch-1 step). Its 16 warps route a row each: up to 16 rows. (At 256 rows, 16 each in turn,
// bench.py's workload on Qwen3-30B-A3B took 30.4 s against 29.3 s with the two kernels.)
constexpr int kFusedThreads = 512, kFusedMaxRows = kFusedThreads / 32;
__global__ void __launch_bounds__(kFusedThreads)
    moe_route_align_kernel(const bf16* __restrict__ logits, int64_t T, int E, int k, bool renormalize,
                           int32_t* __restrict__ ids, float* __restrict__ weights, int bm,
                           int32_t* __restrict__ sorted, int32_t* __restrict__ tile_expert, int max_tiles,
                           int32_t* __restrict__ slot_row) {
  detail::pdl_begin();
  for (int64_t t = threadIdx.x / 32; t < T; t += kFusedThreads / 32)
    route_row<kFusedThreads / 32>(logits + t * E, E, k, renormalize, ids + t * k, weights + t * k, threadIdx.x & 31);
  __syncthreads();  // the block's own global writes are visible to it after the barrier
  align_slots(ids, T * k, E, bm, sorted, tile_expert, max_tiles, slot_row);
}

// ---- 3 and 4. the experts' products ----
struct GemmParams {
  const bf16* a;               // kGather: x (T, K), row t; else act (rows, K), row r
  const bf16* w;               // (E * w_rows, K): expert e's matrix from row e * w_rows
  bf16* out;                   // (rows, N)
  const int32_t* sorted;       // the slot of each padded row (-1: padding)
  const int32_t* tile_expert;  // the expert of each tile (-1: no tile)
  int64_t K, N, w_rows;
  int k_choices;               // top-k: slot s is row s / k of x
};

// kSilu: w holds each expert's 2N rows, gate then up; out = bf16(silu(bf16 g)) * bf16(u).
template <typename C, bool kGather, bool kSilu>
__global__ void __launch_bounds__(C::kThreads) moe_gemm_kernel(GemmParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  detail::pdl_begin();  // the tile's expert and rows come from the grouping kernel
  const int expert = p.tile_expert[blockIdx.y];
  if (expert < 0) return;
  const int64_t m0 = int64_t{blockIdx.y} * C::BM;
  // Row r of the tile: its slot's row of x (kGather) or padded row m0 + r of act; padding: none.
  const auto a_row = [&](int r) -> const bf16* {
    const int slot = p.sorted[m0 + r];
    if (slot < 0) return nullptr;
    return p.a + (kGather ? int64_t{slot / p.k_choices} : m0 + r) * p.K;
  };
  const auto out_row = [&](int r) -> bf16* { return p.out + (m0 + r) * p.N; };
  detail::tile_product<C, kSilu>(smem_raw, a_row, p.w + int64_t{expert} * p.w_rows * p.K, p.N, p.K,
                                 int64_t{blockIdx.x} * C::BN, [] {}, out_row);
}

// ---- 5. the weighted sum over each row's experts ----
__global__ void __launch_bounds__(128)
    moe_combine_kernel(const bf16* __restrict__ y, const int32_t* __restrict__ slot_row,
                       const float* __restrict__ weights, bf16* __restrict__ out, int64_t H, int k) {
  detail::pdl_begin();
  const int64_t t = blockIdx.x;
  for (int64_t h = int64_t{threadIdx.x} * 8; h < H; h += int64_t{blockDim.x} * 8) {
    float sum[8] = {};
    for (int j = 0; j < k; ++j) {
      const float wj = weights[t * k + j];
      float v[8];
      const int64_t row = slot_row ? int64_t{slot_row[t * k + j]} : t * k + j;  // null: the GEMV path's pairs
      detail::load_bf16<8>(y + row * H + h, v);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum[i] += wj * v[i];
    }
    detail::store_bf16<8>(out + t * H + h, sum);
  }
}

// Byte offsets of the workspace's parts, each 256-byte aligned.
struct Layout {
  size_t ids, weights, slot_row, sorted, tile_expert, act, y, total;
  int64_t rows;   // padded rows at most
  int max_tiles;  // tiles at most
};
Layout layout(int64_t T, int E, int k, int64_t H, int64_t I, int bm) {
  Layout l{};
  const int64_t slots = T * k;
  // Each used expert pads its group by < bm rows; at most min(E, slots) are used.
  l.max_tiles = static_cast<int>((slots + bm - 1) / bm + std::min<int64_t>(E, slots));
  l.rows = int64_t{l.max_tiles} * bm;
  size_t at = 0;
  const auto take = [&](size_t bytes) {
    const size_t here = at;
    at += (bytes + 255) / 256 * 256;
    return here;
  };
  l.ids = take(slots * 4);
  l.weights = take(slots * 4);
  l.slot_row = take(slots * 4);
  l.sorted = take(l.rows * 4);
  l.tile_expert = take(size_t(l.max_tiles) * 4);
  l.act = take(l.rows * I * 2);
  l.y = take(l.rows * H * 2);
  l.total = at;
  return l;
}

template <typename C, bool kGather, bool kSilu>
void launch_gemm(const GemmParams& p, int max_tiles, cudaStream_t stream) {
  constexpr size_t smem = C::smem_bytes(kSilu);
  static const bool attr_set = [] {  // above 48 KB needs the opt-in, once per kernel
    NANOVLLM_CUDA_CHECK(cudaFuncSetAttribute(moe_gemm_kernel<C, kGather, kSilu>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)attr_set;
  const dim3 grid(static_cast<unsigned>((p.N + C::BN - 1) / C::BN), static_cast<unsigned>(max_tiles));
  detail::launch(moe_gemm_kernel<C, kGather, kSilu>, grid, C::kThreads, smem, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

void check_args(const char* op, int64_t T, int E, int k) {
  detail::require(T >= 0, op, "T must be non-negative, got " + std::to_string(T));
  const std::string why = moe_unsupported(E, k, 8, 8);
  detail::require(why.empty(), op, why);
  detail::require(T * k <= INT32_MAX / 2, op, "too many rows: " + std::to_string(T));
}

}  // namespace

std::string moe_unsupported(int E, int k, int64_t H, int64_t I) {
  if (E < 1 || E > kMaxExperts)
    return "the number of experts must be in [1, " + std::to_string(kMaxExperts) + "], got " + std::to_string(E);
  if (k < 1 || k > std::min(E, kMaxK))
    return "experts per token must be in [1, min(experts, " + std::to_string(kMaxK) + ")], got " + std::to_string(k) +
           " of " + std::to_string(E);
  if (H <= 0 || I <= 0 || H % 8 != 0 || I % 8 != 0)
    return "hidden and intermediate sizes must be positive multiples of 8, got " + std::to_string(H) + " and " +
           std::to_string(I);
  return "";
}

void moe_route(const void* router_logits, int64_t T, int E, int k, bool renormalize, int32_t* ids, float* weights,
               cudaStream_t stream) {
  check_args("moe_route", T, E, k);
  if (T == 0) return;
  detail::require(router_logits && ids && weights, "moe_route", "null pointer");
  detail::launch(moe_route_kernel, dim3(static_cast<unsigned>((T + 3) / 4)), 128, 0, stream,
                 static_cast<const bf16*>(router_logits), T, E, k, renormalize, ids, weights);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

size_t moe_workspace_bytes(int64_t T, int E, int k, int64_t H, int64_t I, bool decode, MoeTiles tiles) {
  return T > 0 ? layout(T, E, k, H, I, pick_tiles(T, E, k, H, I, decode, tiles).bm()).total : 0;
}

void moe_mlp(const void* x, const void* router_logits, const void* gate_up, const void* down, void* out, int64_t T,
             int64_t H, int64_t I, int E, int k, bool renormalize, bool decode, void* workspace,
             size_t workspace_bytes, cudaStream_t stream, MoeTiles forced) {
  const char* op = "moe_mlp";
  check_args(op, T, E, k);
  const std::string why = moe_unsupported(E, k, H, I);
  detail::require(why.empty(), op, why);
  if (T == 0) return;
  detail::require(x && router_logits && gate_up && down && out && workspace, op, "null pointer");
  detail::require(detail::aligned16(x) && detail::aligned16(gate_up) && detail::aligned16(down) &&
                      detail::aligned16(out) && detail::aligned16(workspace),
                  op, "x, the weights, out and the workspace must be 16-byte aligned");
  const TileChoice tiles = pick_tiles(T, E, k, H, I, decode, forced);
  const Layout l = layout(T, E, k, H, I, tiles.bm());
  detail::require(workspace_bytes >= l.total, op,
                  "workspace of " + std::to_string(workspace_bytes) + " bytes, needs " + std::to_string(l.total));
  char* ws = static_cast<char*>(workspace);
  auto* ids = reinterpret_cast<int32_t*>(ws + l.ids);
  auto* weights = reinterpret_cast<float*>(ws + l.weights);
  auto* slot_row = reinterpret_cast<int32_t*>(ws + l.slot_row);
  auto* sorted = reinterpret_cast<int32_t*>(ws + l.sorted);
  auto* tile_expert = reinterpret_cast<int32_t*>(ws + l.tile_expert);
  auto* act = reinterpret_cast<bf16*>(ws + l.act);
  auto* y = reinterpret_cast<bf16*>(ws + l.y);

  if (tiles.gate_up == MoeTiles::kGemv) {
    // Pair p = t k + j: act row p = silu(gate_e x_t) * up_e x_t, y row p = act_p down_e^T.
    moe_route(router_logits, T, E, k, renormalize, ids, weights, stream);
    gemv_experts(x, k, gate_up, 2 * I, ids, act, T * k, I, H, true, stream);
    gemv_experts(act, 1, down, H, ids, y, T * k, H, I, false, stream);
    detail::launch(moe_combine_kernel, dim3(static_cast<unsigned>(T)), 128, 0, stream, static_cast<const bf16*>(y),
                   static_cast<const int32_t*>(nullptr), static_cast<const float*>(weights), static_cast<bf16*>(out),
                   H, k);
    NANOVLLM_CUDA_CHECK_LAUNCH();
    return;
  }
  if (T <= kFusedMaxRows && E <= kFusedThreads) {
    detail::launch(moe_route_align_kernel, dim3(1), kFusedThreads, 0, stream, static_cast<const bf16*>(router_logits),
                   T, E, k, renormalize, ids, weights, tiles.bm(), sorted, tile_expert, l.max_tiles, slot_row);
  } else {
    moe_route(router_logits, T, E, k, renormalize, ids, weights, stream);
    detail::launch(moe_align_kernel, dim3(1), 1024, 0, stream, static_cast<const int32_t*>(ids), T * k, E,
                   tiles.bm(), sorted, tile_expert, l.max_tiles, slot_row);
  }
  NANOVLLM_CUDA_CHECK_LAUNCH();
  // gate/up: act = silu(x[rows] gate_up_e^T) * ...; down: y = act down_e^T (same tiles' BM).
  GemmParams g_up{};
  g_up.sorted = sorted;
  g_up.tile_expert = tile_expert;
  g_up.k_choices = k;
  GemmParams g_down = g_up;
  g_up.a = static_cast<const bf16*>(x);
  g_up.w = static_cast<const bf16*>(gate_up);
  g_up.out = act;
  g_up.K = H, g_up.N = I, g_up.w_rows = 2 * I;
  g_down.a = act;
  g_down.w = static_cast<const bf16*>(down);
  g_down.out = y;
  g_down.K = I, g_down.N = H, g_down.w_rows = H;
  switch (tiles.gate_up) {
    case MoeTiles::kLarge: launch_gemm<LargeTiles, true, true>(g_up, l.max_tiles, stream); break;
    case MoeTiles::kMedium: launch_gemm<MediumTiles, true, true>(g_up, l.max_tiles, stream); break;
    case MoeTiles::kSmallLong: launch_gemm<SmallLong, true, true>(g_up, l.max_tiles, stream); break;
    default: launch_gemm<SmallWide, true, true>(g_up, l.max_tiles, stream); break;
  }
  switch (tiles.down) {
    case MoeTiles::kLarge: launch_gemm<LargeTiles, false, false>(g_down, l.max_tiles, stream); break;
    case MoeTiles::kMedium: launch_gemm<MediumTiles, false, false>(g_down, l.max_tiles, stream); break;
    case MoeTiles::kSmallLong: launch_gemm<SmallLong, false, false>(g_down, l.max_tiles, stream); break;
    default: launch_gemm<SmallWide, false, false>(g_down, l.max_tiles, stream); break;
  }
  detail::launch(moe_combine_kernel, dim3(static_cast<unsigned>(T)), 128, 0, stream, static_cast<const bf16*>(y),
                 static_cast<const int32_t*>(slot_row), static_cast<const float*>(weights), static_cast<bf16*>(out),
                 H, k);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
