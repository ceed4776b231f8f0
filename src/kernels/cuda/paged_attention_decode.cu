// Paged attention for decode steps — one query row per sequence — as flash-decoding.
//
//   Sequence s owns query row s of qkv and keys t < n_s = context_lens[s] (its cached prefix
//   plus the token being decoded). For query head qh = kvh g + j (g = nh / nkv):
//     x_t            = scale * q[s, qh, :] . K_s[t, kvh, :]
//     out[s, qh, :]  = sum_t softmax_t(x) V_s[t, kvh, :]
//     K_s[t] = k_cache[block_tables[s, t / bs], t % bs]          (V likewise)
//   qkv (num_seqs, (nh + 2 nkv) d) bf16, q first; k_cache, v_cache (num_blocks, bs, nkv, d)
//   bf16; context_lens (num_seqs,) int32; block_tables (num_seqs, max_blocks) int32;
//   out (num_seqs, nh d) bf16. Scores, softmax and sums in float32; out rounded once.
//   A sequence with n_s == 0 gets a zero row. A block id outside [0, num_blocks) masks its keys
//   (as the CPU reference does); n_s is clamped to max_blocks * bs and to max_context_len, so
//   nothing past the table or the grid is read.
//
// Work split, batch invariant. A sequence of n keys is cut into splits of len(n) keys, len(n)
// = 256 ceil(ceil(n / 256) / M): 256-key splits up to M of them, longer ones past M 256 keys.
// (256, not 128: at 128 a CTA's 64 KB of K/V is too short a stream to hide its start and the
// workspace round trip; measured on an H200, batch 256 x 1k reached 75% of copy bandwidth.)
// M is a function of the model's shape only (16, or more when a sequence has fewer than 8
// CTAs of heads, so a lone long sequence still covers ~128 SMs). The cut, the order of every
// sum and the path taken (one split: pass 1 writes the row; several: through the workspace)
// therefore depend on the sequence's own n, never on the batch or on max_context_len: a
// sequence's output bits are the same alone or in any batch. The grid (splits_max, kv heads x
// head chunks, num_seqs) is sized from max_context_len (splits_max = min(M, ceil(max / 256)) is
// the most splits any n <= max can have), so a captured graph replays with any contexts; CTAs
// past their sequence's splits exit at once.
//   Pass 1: one CTA per (split, kv head, up to G = 8 of its query heads, sequence) reads each
// K/V row of its split once for all its query heads (grouped-query aware) and writes the
// finished row (one split) or (o = acc / l, m, l) to the workspace. Pass 2, for sequences with
// several splits: out = sum_i w_i o_i / sum_i w_i with w_i = l_i 2^(m_i - max m), in split
// order. Scores are kept in base 2 (q is pre-multiplied by scale log2 e): one exp2 each.
//
// Inside a CTA (128 threads, 4 warps) no barrier runs until the end. Warp w owns the warp tiles
// w, w + 4, w + 8, ... of the split (a warp tile is KW = 1024 / d keys: 4 KB of K and V) and
// streams them through its own 4-stage cp.async ring in shared memory (16 KB per warp, 64 KB
// per CTA, so up to 64 KB of K/V in flight per CTA and 3 CTAs = 192 KB per SM; Little's law
// asks ~25 KB per SM at 4.2 TB/s). Only __syncwarp orders a stage's arrival and its reuse. A
// K/V row of d bf16 is L = d / 8 lanes x 16 bytes; a warp covers 32 / L rows per 512-byte
// shared load, conflict free. Each warp keeps its own online softmax: the G per-head dot
// products of a lane are summed over its L lanes by a halving exchange (G - 1 + log2(L / G)
// shuffles), the tile max is one exchange between the rows, and each lane fetches the other
// heads' probabilities by shuffle for its P V update: no shared-memory round trip for scores.
// At the end the 4 warps' (acc, m, l) meet in shared memory (one __syncthreads) in fixed order.
// K/V loads carry an L2 evict-first hint: they are read once, and the partials written for
// pass 2 then tend to stay in L2. A warp reads the block table once per block it walks (when
// the block size is a multiple of KW, as the engine's 256 is), not once per row and tile.
//   With counters (paged_attention_decode's last argument) pass 2 runs inside pass 1: the last
// CTA of a sequence's splits to finish combines them (combine_if_last), same sums, same bits,
// one launch instead of two.
//   Bytes: each K/V element once per KV head group, 4 n d nkv per sequence, plus q, out and,
// with several splits, (d + 2) floats per split and query head written and read back (~1.6% at
// 256-key splits, d = 128, 2 heads per KV head).
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kStages = 4;                 // cp.async ring depth per warp (a power of two)
constexpr int kStageBytes = 4096;          // K and V bytes of one warp tile
constexpr int kSmemBytes = kWarps * kStages * kStageBytes;  // 64 KB per CTA
constexpr int kCtasPerSm = 3;              // what 64 KB of shared memory per CTA allows
// ... asking <= 168 registers; 8 heads per CTA need more (q and acc alone are 128), so 2.
constexpr int min_ctas_per_sm(int G) { return G >= 8 ? 2 : kCtasPerSm; }
constexpr int kSplitUnit = 256;            // splits cover multiples of this many keys
constexpr int kBaseMaxSplits = 16;         // M for models with >= 8 CTAs of heads per sequence
constexpr int kLoneSeqCtas = 128;          // ... and otherwise enough splits for this many CTAs
constexpr int kMaxSplitsCap = 128;
constexpr int kMaxHeadsPerCta = 8;         // G: query heads sharing a CTA's K/V reads

struct DecodeParams {
  const bf16* qkv;             // (num_seqs, (nh + 2 nkv) d)
  const bf16* k_cache;         // (num_blocks, bs, nkv, d)
  const bf16* v_cache;         // (num_blocks, bs, nkv, d)
  const int32_t* context_lens; // (num_seqs,)
  const int32_t* block_tables; // (num_seqs, max_blocks)
  bf16* out;                   // (num_seqs, nh d)
  float* ws_o;                 // (num_seqs, nh, grid_splits, d)   only when grid_splits > 1
  float* ws_ml;                // (num_seqs, nh, grid_splits, 2)   only when grid_splits > 1
  int* counters;               // (num_seqs, nkv head_chunks), zero; null: pass 2 is its own kernel
  int64_t qkv_stride;          // (nh + 2 nkv) d
  int64_t num_blocks;
  int nh, nkv, group, head_chunks;
  int block_size, block_shift;  // block_shift = log2(bs) when bs is a power of two, else -1
  int max_blocks;
  int max_context_len;
  int max_splits;               // M: the most splits of one sequence (shape only)
  int grid_splits;              // min(M, ceil(max_context_len / 256)): grid x, workspace slots
  float scale_log2;             // scale * log2(e)
};

// ---- The work split: a function of (n, M) only, shared by host and device ----

__host__ __device__ __forceinline__ int split_len(int n, int max_splits) {
  const int units = (n + kSplitUnit - 1) / kSplitUnit;
  return kSplitUnit * ((units + max_splits - 1) / max_splits);
}
__host__ __device__ __forceinline__ int split_count(int n, int max_splits) {
  return n > 0 ? (n + split_len(n, max_splits) - 1) / split_len(n, max_splits) : 1;
}
// The most splits any context of at most max_context_len keys has: split_count(n) is n's
// 256-key unit count while that is <= M, and at most M after.
int grid_splits(int max_context_len, int max_splits) {
  const int64_t units = (int64_t{max_context_len} + kSplitUnit - 1) / kSplitUnit;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(units, max_splits)));
}
int heads_per_cta(int group) {
  int g = 1;
  while (g < group && g < kMaxHeadsPerCta) g *= 2;
  return g;
}
int max_splits_for(int nkv, int group) {
  const int g = heads_per_cta(group);
  const int64_t ctas = int64_t{nkv} * ((group + g - 1) / g);
  const int64_t m = (kLoneSeqCtas + ctas - 1) / ctas;
  return static_cast<int>(std::min<int64_t>(kMaxSplitsCap, std::max<int64_t>(kBaseMaxSplits, m)));
}

__device__ __forceinline__ int context_of(const DecodeParams& p, int s) {
  const int64_t n = __ldg(p.context_lens + s);
  int64_t cap = int64_t{p.max_blocks} * p.block_size;
  cap = cap < p.max_context_len ? cap : p.max_context_len;
  return static_cast<int>(n < 0 ? 0 : (n > cap ? cap : n));
}

// ---- cp.async helpers (sm_80+) ----

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
// 16 bytes global -> shared, bypassing L1; src_bytes 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes), "l"(policy)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// 8 bf16 (one 16-byte load, element 0 in the low half of u.x) to float: a bf16 is the high
// half of its float, so each is one shift or mask. Working on the words (not through a
// bfloat162 view of u) keeps the shared-memory load a single 128-bit one.
__device__ __forceinline__ void bf16x8_to_float(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// v[h] holds this lane's part of head h's dot product; the L lanes of an aligned group (c =
// lane % L) hold the parts of the same key. Returns the full dot product of head c / (L / G),
// bitwise the same on all L / G lanes that hold that head. Each halving step keeps half the
// heads (the upper half on lanes whose bit o is set) and adds the partner's copy of them; the
// last log2(L / G) steps are a plain butterfly sum.
template <int G, int L>
__device__ __forceinline__ float reduce_heads(float (&v)[G], int c) {
#pragma unroll
  for (int n = G, o = L / 2; n > 1; n /= 2, o /= 2) {
    const bool upper = (c & o) != 0;
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const float send = upper ? v[i] : v[i + n / 2];
      const float keep = upper ? v[i + n / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
    }
  }
  float r = v[0];
#pragma unroll
  for (int o = L / (2 * G); o >= 1; o /= 2) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

// The shapes of one instantiation. A lane (sub, c) = (lane / L, lane % L) handles columns
// c * 8 .. c * 8 + 7 of key row u * KPW + sub of a warp tile, for u < U, both when it queues
// the copies and when it computes.
template <int D, int G>
struct Shape {
  static constexpr int L = D / 8;                      // lanes per K/V row
  static constexpr int KPW = 32 / L;                   // rows per warp instruction
  static constexpr int KW = kStageBytes / (4 * D);     // keys per warp tile: 16, 8, 4
  static constexpr int U = KW / KPW;                   // rows per lane per tile: 4
  static constexpr int HPL = L / G;                    // lanes holding the same head's score
  static constexpr int kHalf = KW * D * 2;             // bytes of the K (or V) half of a stage
  static_assert(G <= L && U * KPW == KW && U <= 8 && kHalf * 2 == kStageBytes, "tile shape");
  static_assert(G * D * 4 + 2 * G * 4 <= kStages * kStageBytes, "merge area fits a warp's ring");
};

// The block-table entry a warp read last: a warp's tiles walk its split in order, so with the
// engine's 256-key blocks it reads the table once per block instead of once per row and tile
// (Nsight Compute on a 1 x 512 launch: the refills' table reads were a sixth of its samples).
struct BlockCache {
  int bi = -1;
  int32_t blk = 0;
};

// Queues the copies of the warp tile starting at key0 (warp-uniform) into the stage at shared
// address `stage` and returns the validity of this lane's U keys (bit u): inside the split and
// in a valid block. Invalid keys read nothing and land as zeros, so p = 0 never meets a NaN.
template <int D, int G>
__device__ __forceinline__ uint32_t issue_tile(const DecodeParams& p, const int32_t* table, int64_t col,
                                               int key0, int k_end, uint32_t stage, int lane, int sub,
                                               uint64_t policy, BlockCache& bc) {
  using S = Shape<D, G>;
  const int64_t kv_row = int64_t{p.nkv} * D;
  uint32_t valid = 0;
  if (p.block_size % S::KW == 0) {
    // key0 is a multiple of KW, so the whole tile lies in one block: one table entry.
    bool blk_ok = false;
    int64_t base = 0;
    if (key0 < k_end) {
      const int bi = p.block_shift >= 0 ? key0 >> p.block_shift : key0 / p.block_size;
      if (bi != bc.bi) {
        bc.bi = bi;
        bc.blk = __ldg(table + bi);
      }
      blk_ok = bc.blk >= 0 && bc.blk < p.num_blocks;
      base = (int64_t{bc.blk} * p.block_size + (key0 - bi * p.block_size)) * kv_row + col;
    }
#pragma unroll
    for (int u = 0; u < S::U; ++u) {
      const int r = u * S::KPW + sub;
      const bool ok = blk_ok && key0 + r < k_end;
      const int64_t off = base + r * kv_row;
      const uint32_t dst = stage + u * 512 + lane * 16;
      cp_async16(dst, ok ? p.k_cache + off : p.k_cache, ok ? 16 : 0, policy);
      cp_async16(dst + S::kHalf, ok ? p.v_cache + off : p.v_cache, ok ? 16 : 0, policy);
      valid |= uint32_t{ok} << u;
    }
    return valid;
  }
#pragma unroll
  for (int u = 0; u < S::U; ++u) {
    const int key = key0 + u * S::KPW + sub;
    bool ok = key < k_end;
    int64_t off = 0;
    if (ok) {
      const int bi = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
      const int32_t blk = __ldg(table + bi);
      ok = blk >= 0 && blk < p.num_blocks;
      off = (int64_t{blk} * p.block_size + (key - bi * p.block_size)) * kv_row + col;
    }
    const uint32_t dst = stage + u * 512 + lane * 16;
    cp_async16(dst, ok ? p.k_cache + off : p.k_cache, ok ? 16 : 0, policy);
    cp_async16(dst + S::kHalf, ok ? p.v_cache + off : p.v_cache, ok ? 16 : 0, policy);
    valid |= uint32_t{ok} << u;
  }
  return valid;
}

// A warp's running state: acc over this lane's rows (sub) for every head of the CTA; m_run for
// head c / HPL (the same on every lane of that head); l_run likewise, over this lane's rows.
template <int G>
struct WarpState {
  float acc[G][8];
  float m_run, l_run;
};

// One warp tile already in shared memory at `stage` (generic pointer): scores, the online
// softmax update and acc += p V.
template <int D, int G>
__device__ __forceinline__ void compute_tile(const char* stage, uint32_t valid, const float (&q)[G][8],
                                             WarpState<G>& st, int lane, int sub, int c) {
  using S = Shape<D, G>;
  float x[S::U];
#pragma unroll
  for (int u = 0; u < S::U; ++u) {
    float k[8];
    bf16x8_to_float(*reinterpret_cast<const uint4*>(stage + u * 512 + lane * 16), k);
    float dot[G];
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float s = 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) s = fmaf(q[h][e], k[e], s);
      dot[h] = s;
    }
    const float score = reduce_heads<G, S::L>(dot, c);
    x[u] = (valid >> u) & 1u ? score : -INFINITY;
  }
  // Tile max of this lane's head over the warp's rows (lanes that differ in their sub bits).
  float mx = x[0];
#pragma unroll
  for (int u = 1; u < S::U; ++u) mx = fmaxf(mx, x[u]);
#pragma unroll
  for (int o = S::L; o < 32; o *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  const float m_new = fmaxf(st.m_run, mx);
  const float m_use = m_new == -INFINITY ? 0.f : m_new;  // all masked so far: p = 0, no NaN
  const float alpha = exp2f(st.m_run - m_use);
  st.m_run = m_new;
  float sum = 0.f;
#pragma unroll
  for (int u = 0; u < S::U; ++u) {
    x[u] = exp2f(x[u] - m_use);
    sum += x[u];
  }
  st.l_run = st.l_run * alpha + sum;
#pragma unroll
  for (int h = 0; h < G; ++h) {
    const float a = __shfl_sync(0xffffffffu, alpha, h * S::HPL);
#pragma unroll
    for (int e = 0; e < 8; ++e) st.acc[h][e] *= a;
  }
#pragma unroll
  for (int u = 0; u < S::U; ++u) {
    float v[8];
    bf16x8_to_float(*reinterpret_cast<const uint4*>(stage + S::kHalf + u * 512 + lane * 16), v);
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float pr = __shfl_sync(0xffffffffu, x[u], sub * S::L + h * S::HPL);
#pragma unroll
      for (int e = 0; e < 8; ++e) st.acc[h][e] = fmaf(pr, v[e], st.acc[h][e]);
    }
  }
}

// Pass 2 for 4 columns (c4 * 4 ..) of query head qh of sequence seq, over its `splits` partials
// in split order. Reads through L2 (ld.global.cg): in the fused tail below the partials were
// written by other CTAs of the same grid, which this SM's L1 does not see.
template <int D>
__device__ __forceinline__ void combine_columns(const DecodeParams& p, int seq, int qh, int c4, int splits) {
  const int64_t base = (int64_t{seq} * p.nh + qh) * p.grid_splits;
  // Loads in groups of kBatch, issued before their use: each split's partials are an L2 round
  // trip, and taken one at a time they were most of the kernel's time (Nsight Compute, 256
  // sequences: long_sb stalls on the FFMAs after each load). The sums keep their order, so the
  // bits are unchanged.
  constexpr int kBatch = 4;
  float mx = -INFINITY;
  for (int i0 = 0; i0 < splits; i0 += kBatch) {
    float m[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) m[k] = i0 + k < splits ? __ldcg(p.ws_ml + (base + i0 + k) * 2) : -INFINITY;
#pragma unroll
    for (int k = 0; k < kBatch; ++k) mx = fmaxf(mx, m[k]);
  }
  float total = 0.f, o[4] = {0.f, 0.f, 0.f, 0.f};
  for (int i0 = 0; i0 < splits; i0 += kBatch) {
    float2 ml[kBatch];
    float4 v[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const bool in = i0 + k < splits;
      ml[k] = in ? __ldcg(reinterpret_cast<const float2*>(p.ws_ml + (base + i0 + k) * 2)) : make_float2(0.f, 0.f);
      v[k] = in ? __ldcg(reinterpret_cast<const float4*>(p.ws_o + (base + i0 + k) * D + c4 * 4))
                : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      if (i0 + k >= splits) break;
      const float w = ml[k].y > 0.f ? ml[k].y * exp2f(ml[k].x - mx) : 0.f;  // l > 0 implies m and mx finite
      total += w;
      o[0] = fmaf(w, v[k].x, o[0]);
      o[1] = fmaf(w, v[k].y, o[1]);
      o[2] = fmaf(w, v[k].z, o[2]);
      o[3] = fmaf(w, v[k].w, o[3]);
    }
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
#pragma unroll
  for (int e = 0; e < 4; ++e) o[e] *= inv;
  detail::store_bf16<4>(p.out + (int64_t{seq} * p.nh + qh) * D + c4 * 4, o);
}

// Pass 2 inside pass 1 (p.counters set): each CTA of a (sequence, head chunk), once its
// partials are written, counts itself in; the last of the `splits` CTAs to arrive combines the
// chunk's query heads and sets the counter back to zero for the next launch. The sums are
// combine_columns' in the same order, so the bits are those of the separate pass-2 kernel; a
// decode step saves a launch per layer. Called by every thread of the CTA.
template <int D>
__device__ __forceinline__ void combine_if_last(const DecodeParams& p, int seq, int qh0, int nheads, int splits) {
  __shared__ bool last;
  int* counter = p.counters + int64_t{seq} * gridDim.y + blockIdx.y;
  __syncthreads();  // every thread's partials are written (ordered before thread 0's fence)
  if (threadIdx.x == 0) {
    // Release: the fence is cumulative, so it covers what the barrier ordered before it (one
    // fence per CTA, as CUTLASS's split-K semaphore does, not one per thread).
    __threadfence();
    last = atomicAdd(counter, 1) == splits - 1;
    if (last) __threadfence();  // acquire: the other CTAs' partials, before the barrier below
  }
  __syncthreads();
  if (!last) return;
  for (int idx = threadIdx.x; idx < nheads * (D / 4); idx += kThreads)
    combine_columns<D>(p, seq, qh0 + idx / (D / 4), idx % (D / 4), splits);
  if (threadIdx.x == 0) *counter = 0;
}

// kCombine: pass 2 inside (p.counters set). A template parameter, not a branch: with the
// combine's barrier and shared flag merely present (not run) the kernel was 18% slower at
// batch 256 (H200: 0.285 -> 0.336 ms at 256 x 1,024 keys), so the two-kernel path keeps the
// code it had.
template <int D, int G, bool kCombine>
__global__ void __launch_bounds__(kThreads, min_ctas_per_sm(G)) decode_split_kernel(const DecodeParams p) {
  // launch.cuh. The small-batch instantiation (<= 8 sequences, combine inside) with at most
  // kEarlyTriggerCtas CTAs per split index lets the next kernel (the o_proj GEMV) launch first,
  // onto the SMs its few working CTAs leave idle, and does its start-up before the wait: the
  // context length, the exit of the CTAs past the sequence's splits, the block-table reads and
  // the copies of every tile older than the newest key (see "Before the wait" below). The
  // criterion ignores the split slots (gridDim.x): with a graph's bound of 4,096 keys a batch-1
  // grid has 16 of them, 128 CTAs, most of which exit at once.
  bool early = false;
  if constexpr (kCombine) early = gridDim.y * gridDim.z <= detail::kEarlyTriggerCtas;
  if (early)
    detail::pdl_trigger();
  else
    detail::pdl_begin();  // before any global memory access
  using S = Shape<D, G>;
  extern __shared__ __align__(16) char smem[];

  const int seq = blockIdx.z;
  const int kvh = blockIdx.y / p.head_chunks;
  const int h0 = (blockIdx.y % p.head_chunks) * G;
  const int nheads = min(G, p.group - h0);
  const int n = context_of(p, seq);
  const int len = split_len(n, p.max_splits);
  const int splits = split_count(n, p.max_splits);
  const int split = blockIdx.x;
  if (split >= splits) return;  // whole CTA: uniform
  const int k_begin = split * len;
  const int k_end = min(n, k_begin + len);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / S::L, c = lane % S::L;
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks;
  const int64_t col = int64_t{kvh} * D + c * 8;
  const uint64_t policy = evict_first_policy();

  // This warp's tiles: keys k_begin + (j kWarps + warp) KW .. + KW, j < nt.
  const int first = k_begin + warp * S::KW;
  const int nt = first < k_end ? (k_end - first + kWarps * S::KW - 1) / (kWarps * S::KW) : 0;
  char* ring = smem + warp * kStages * kStageBytes;
  const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  auto tile_key = [&](int j) { return first + j * kWarps * S::KW; };

  // Before the wait (early launches only): the ring stages whose keys all precede the newest
  // one, n - 1. In a decode step the kernel just before this one (the K/V store) writes only
  // that row of each sequence; every older row was written by an earlier step, and the context
  // lengths and block tables by host copies before the step's kernels (ops.h states this
  // contract). So the dependent chain context length -> table -> copies runs under the previous
  // kernel instead of after it. One commit per stage, as below, in stage order.
  uint32_t vmask = 0;  // bits s U .. s U + U - 1: validity of the tile in stage s
  BlockCache bc;
  int pre = 0;         // stages already queued
  if (early) {
    for (; pre < kStages && pre < nt && tile_key(pre) + S::KW < n; ++pre) {
      vmask |= issue_tile<D, G>(p, table, col, tile_key(pre), k_end, ring_s + pre * kStageBytes, lane, sub, policy, bc)
               << (pre * S::U);
      cp_async_commit();
    }
    detail::pdl_wait();  // q and the newest row are the previous kernel's
  }

  // This lane's 8 columns of each query head: loaded before the (rest of the) ring is filled,
  // so that their latency overlaps the first block-table read (Nsight Compute at 1 x 512: the
  // lanes waited for q after the fill), converted after it.
  uint4 q_raw[G];
  const bf16* q_row = p.qkv + seq * p.qkv_stride + int64_t{kvh * p.group + h0} * D + c * 8;
#pragma unroll
  for (int h = 0; h < G; ++h)
    q_raw[h] = h < nheads ? __ldg(reinterpret_cast<const uint4*>(q_row + h * D)) : make_uint4(0, 0, 0, 0);

  // Fill the ring. One commit per stage, empty or not, keeps the group count uniform so
  // wait_group<kStages - 1> always means "tile j is in".
#pragma unroll
  for (int s = pre; s < kStages; ++s) {
    if (s < nt)
      vmask |= issue_tile<D, G>(p, table, col, tile_key(s), k_end, ring_s + s * kStageBytes, lane, sub, policy, bc)
               << (s * S::U);
    cp_async_commit();
  }

  // q in base-2 score units (heads past nheads are zeros).
  float q[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    bf16x8_to_float(q_raw[h], q[h]);
#pragma unroll
    for (int e = 0; e < 8; ++e) q[h][e] *= p.scale_log2;
  }

  WarpState<G> st;
#pragma unroll
  for (int h = 0; h < G; ++h)
#pragma unroll
    for (int e = 0; e < 8; ++e) st.acc[h][e] = 0.f;
  st.m_run = -INFINITY;
  st.l_run = 0.f;

  constexpr uint32_t kTileBits = (1u << S::U) - 1;
  for (int j = 0; j < nt; ++j) {
    const int s = j & (kStages - 1);
    cp_async_wait<kStages - 1>();  // this lane's copies of tile j are in
    __syncwarp();                  // ... and every lane's are visible to the warp
    compute_tile<D, G>(ring + s * kStageBytes, (vmask >> (s * S::U)) & kTileBits, q, st, lane, sub, c);
    __syncwarp();  // every lane has read stage s before it is refilled
    if (j + kStages < nt) {
      const uint32_t v = issue_tile<D, G>(p, table, col, tile_key(j + kStages), k_end, ring_s + s * kStageBytes,
                                          lane, sub, policy, bc);
      vmask = (vmask & ~(kTileBits << (s * S::U))) | (v << (s * S::U));
    }
    cp_async_commit();
  }
  cp_async_wait<0>();  // only empty groups can be left; the ring is reused below

  // Sum acc and l over the warp's rows, then hand (acc, m, l) to the CTA through this warp's
  // own ring: acc at [h][D] floats, then (m, l) per head.
#pragma unroll
  for (int o = S::L; o < 32; o *= 2) {
#pragma unroll
    for (int h = 0; h < G; ++h)
#pragma unroll
      for (int e = 0; e < 8; ++e) st.acc[h][e] += __shfl_xor_sync(0xffffffffu, st.acc[h][e], o);
    st.l_run += __shfl_xor_sync(0xffffffffu, st.l_run, o);
  }
  __syncwarp();
  float* red = reinterpret_cast<float*>(ring);
  if (sub == 0) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float4* dst = reinterpret_cast<float4*>(red + h * D + c * 8);
      dst[0] = make_float4(st.acc[h][0], st.acc[h][1], st.acc[h][2], st.acc[h][3]);
      dst[1] = make_float4(st.acc[h][4], st.acc[h][5], st.acc[h][6], st.acc[h][7]);
    }
    if (c % S::HPL == 0) {
      red[G * D + 2 * (c / S::HPL)] = st.m_run;
      red[G * D + 2 * (c / S::HPL) + 1] = st.l_run;
    }
  }
  __syncthreads();

  // Merge the warps in order 0..3 (fixed: the result depends on the split alone).
  const float* reds = reinterpret_cast<const float*>(smem);
  constexpr int kRingFloats = kStages * kStageBytes / 4;
  for (int idx = threadIdx.x; idx < G * S::L; idx += kThreads) {
    const int h = idx / S::L, c8 = idx % S::L;
    if (h >= nheads) continue;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, reds[w * kRingFloats + G * D + 2 * h]);
    const float m_use = m == -INFINITY ? 0.f : m;
    float l = 0.f, o[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* r = reds + w * kRingFloats;
      const float f = exp2f(r[G * D + 2 * h] - m_use);  // 0 for a warp that saw no valid key
      l = fmaf(f, r[G * D + 2 * h + 1], l);
      const float4 a = *reinterpret_cast<const float4*>(r + h * D + c8 * 8);
      const float4 b = *reinterpret_cast<const float4*>(r + h * D + c8 * 8 + 4);
      o[0] = fmaf(f, a.x, o[0]);
      o[1] = fmaf(f, a.y, o[1]);
      o[2] = fmaf(f, a.z, o[2]);
      o[3] = fmaf(f, a.w, o[3]);
      o[4] = fmaf(f, b.x, o[4]);
      o[5] = fmaf(f, b.y, o[5]);
      o[6] = fmaf(f, b.z, o[6]);
      o[7] = fmaf(f, b.w, o[7]);
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] *= inv;
    const int qh = kvh * p.group + h0 + h;
    if (splits == 1) {
      detail::store_bf16<8>(p.out + (int64_t{seq} * p.nh + qh) * D + c8 * 8, o);
    } else {
      const int64_t slot = (int64_t{seq} * p.nh + qh) * p.grid_splits + split;
      float4* dst = reinterpret_cast<float4*>(p.ws_o + slot * D + c8 * 8);
      dst[0] = make_float4(o[0], o[1], o[2], o[3]);
      dst[1] = make_float4(o[4], o[5], o[6], o[7]);
      if (c8 == 0) {
        p.ws_ml[slot * 2] = m;
        p.ws_ml[slot * 2 + 1] = l;
      }
    }
  }
  if constexpr (kCombine)
    if (splits > 1) combine_if_last<D>(p, seq, kvh * p.group + h0, nheads, splits);
}

// Pass 2 as its own kernel (no counters): blockDim (D / 4, 128 / (D / 4)); thread x owns 4
// columns of query head blockIdx.x * blockDim.y + y of sequence blockIdx.y. Sequences with one
// split were finished by pass 1.
template <int D>
__global__ void __launch_bounds__(kThreads) decode_combine_kernel(const DecodeParams p) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  const int seq = blockIdx.y;
  const int qh = blockIdx.x * blockDim.y + threadIdx.y;
  if (qh >= p.nh) return;
  const int splits = split_count(context_of(p, seq), p.max_splits);
  if (splits == 1) return;
  combine_columns<D>(p, seq, qh, threadIdx.x, splits);
}

void check_shape(const char* op, int num_seqs, int nh, int nkv, int d, int max_context_len) {
  using detail::require;
  require(num_seqs >= 0 && num_seqs <= 65535, op,
          "num_seqs must be in [0, 65535], got " + std::to_string(num_seqs));
  require(nh > 0 && nkv > 0 && nh % nkv == 0, op,
          "need nh, nkv > 0 with nh a multiple of nkv; got nh=" + std::to_string(nh) +
              " nkv=" + std::to_string(nkv));
  require(d == 64 || d == 128 || d == 256, op, "head_dim must be 64, 128 or 256, got " + std::to_string(d));
  require(max_context_len >= 0, op, "max_context_len must be non-negative");
}

template <int D, int G, bool kCombine>
void launch_split_as(const DecodeParams& p, int num_seqs, cudaStream_t stream) {
  // Raise the dynamic shared memory limit once per instantiation (a host call, not a stream
  // operation, made at the first launch, normally before any graph capture).
  static const cudaError_t attr = cudaFuncSetAttribute(decode_split_kernel<D, G, kCombine>,
                                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  NANOVLLM_CUDA_CHECK(attr);
  const dim3 grid(p.grid_splits, p.nkv * p.head_chunks, num_seqs);
  detail::launch(decode_split_kernel<D, G, kCombine>, grid, kThreads, kSmemBytes, stream, p);
}
template <int D, int G>
void launch_split(const DecodeParams& p, int num_seqs, cudaStream_t stream) {
  if (p.counters) launch_split_as<D, G, true>(p, num_seqs, stream);
  else launch_split_as<D, G, false>(p, num_seqs, stream);
}

template <int D>
void launch(const DecodeParams& p, int G, int num_seqs, cudaStream_t stream) {
  switch (G) {
    case 1: launch_split<D, 1>(p, num_seqs, stream); break;
    case 2: launch_split<D, 2>(p, num_seqs, stream); break;
    case 4: launch_split<D, 4>(p, num_seqs, stream); break;
    default: launch_split<D, 8>(p, num_seqs, stream); break;
  }
  NANOVLLM_CUDA_CHECK_LAUNCH();
  if (p.grid_splits > 1 && !p.counters) {
    const dim3 block(D / 4, kThreads / (D / 4));
    const dim3 grid((p.nh + block.y - 1) / block.y, num_seqs);
    detail::launch(decode_combine_kernel<D>, grid, block, 0, stream, p);
    NANOVLLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

size_t paged_attention_decode_workspace_bytes(int max_num_seqs, int nh, int nkv, int d,
                                              int max_context_len) {
  check_shape("paged_attention_decode_workspace_bytes", max_num_seqs, nh, nkv, d, max_context_len);
  // Grows with both arguments, so the size for (max batch, max context) covers every call.
  const int s = grid_splits(max_context_len, max_splits_for(nkv, nh / nkv));
  if (s <= 1) return 0;
  return size_t(max_num_seqs) * size_t(nh) * size_t(s) * size_t(d + 2) * sizeof(float);
}

size_t paged_attention_decode_counters(int max_num_seqs, int nh, int nkv) {
  check_shape("paged_attention_decode_counters", max_num_seqs, nh, nkv, 128, 0);
  const int group = nh / nkv;
  const int64_t chunks = (group + heads_per_cta(group) - 1) / heads_per_cta(group);
  return size_t(max_num_seqs) * size_t(nkv) * size_t(chunks);
}

void paged_attention_decode(const void* qkv, int nh, int nkv, int d, float scale,
                            const void* k_cache, const void* v_cache, int block_size,
                            int64_t num_blocks, int num_seqs, const int32_t* context_lens,
                            const int32_t* block_tables, int max_blocks_per_seq,
                            int max_context_len, void* out, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream, int* counters) {
  const char* op = "paged_attention_decode";
  using detail::require;
  check_shape(op, num_seqs, nh, nkv, d, max_context_len);
  require(block_size >= 1, op, "block_size must be positive, got " + std::to_string(block_size));
  require(num_blocks >= 0, op, "num_blocks must be non-negative");
  require(max_blocks_per_seq >= 1, op, "max_blocks_per_seq must be positive");
  require(int64_t{max_blocks_per_seq} * block_size <= INT32_MAX, op,
          "max_blocks_per_seq * block_size must fit in int32");
  require(std::isfinite(scale), op, "scale must be finite");
  if (num_seqs == 0) return;
  require(qkv && k_cache && v_cache && context_lens && block_tables && out, op, "null pointer");
  require(detail::aligned16(qkv) && detail::aligned16(k_cache) && detail::aligned16(v_cache) &&
              detail::aligned16(out),
          op, "qkv, k_cache, v_cache and out must be 16-byte aligned");

  const int G = heads_per_cta(nh / nkv);
  DecodeParams p{};
  p.qkv = static_cast<const bf16*>(qkv);
  p.k_cache = static_cast<const bf16*>(k_cache);
  p.v_cache = static_cast<const bf16*>(v_cache);
  p.context_lens = context_lens;
  p.block_tables = block_tables;
  p.out = static_cast<bf16*>(out);
  p.qkv_stride = int64_t{nh + 2 * nkv} * d;
  p.num_blocks = num_blocks;
  p.nh = nh;
  p.nkv = nkv;
  p.group = nh / nkv;
  p.head_chunks = (p.group + G - 1) / G;
  p.block_size = block_size;
  p.block_shift = -1;
  if ((block_size & (block_size - 1)) == 0)
    for (p.block_shift = 0; (1 << p.block_shift) < block_size; ++p.block_shift) {
    }
  p.max_blocks = max_blocks_per_seq;
  p.max_context_len = max_context_len;
  p.max_splits = max_splits_for(nkv, p.group);
  p.grid_splits = grid_splits(max_context_len, p.max_splits);
  p.scale_log2 = scale * 1.4426950408889634f;
  require(int64_t{nkv} * p.head_chunks <= 65535, op, "too many KV heads");
  if (p.grid_splits > 1) {
    const size_t need = paged_attention_decode_workspace_bytes(num_seqs, nh, nkv, d, max_context_len);
    require(workspace && workspace_bytes >= need, op,
            "workspace of " + std::to_string(workspace_bytes) + " bytes is too small: this call needs " +
                std::to_string(need) + " (see paged_attention_decode_workspace_bytes)");
    require(detail::aligned16(workspace), op, "workspace must be 16-byte aligned");
    p.ws_o = static_cast<float*>(workspace);
    p.ws_ml = p.ws_o + int64_t{num_seqs} * nh * p.grid_splits * d;
    p.counters = counters;
  }
  switch (d) {
    case 64: launch<64>(p, G, num_seqs, stream); break;
    case 128: launch<128>(p, G, num_seqs, stream); break;
    default: launch<256>(p, G, num_seqs, stream); break;
  }
}

}  // namespace nanovllm::gpu
