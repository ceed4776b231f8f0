// Paged attention for any step — prefill, chunked prefill over a cached prefix, decode rows
// mixed in — as FlashAttention-2 on the tensor cores (mma.sync m16n8k16 bf16, ldmatrix).
//
//   Sequence s owns query rows [cu_seqlens_q[s], cu_seqlens_q[s+1]) (q_len of them) and keys
//   t < n_s = context_lens[s]; its query row i sees keys t <= n_s - q_len + i. For query head
//   qh = kvh g + j (g = nh / nkv):
//     out[row, qh, :] = sum_t softmax_t(scale q[row, qh, :] . K_s[t, kvh, :]) V_s[t, kvh, :]
//     K_s[t] = k_cache[block_tables[s, t / bs], t % bs]          (V likewise)
//   qkv (T, (nh + 2 nkv) d) bf16, q first; k_cache, v_cache (num_blocks, bs, nkv, d) bf16;
//   cu_seqlens_q (num_seqs + 1,), context_lens (num_seqs,), block_tables (num_seqs,
//   max_blocks) int32; out (T, nh d) bf16. S = QK^T and O = PV in bf16 x bf16 -> float32 on the
//   tensor cores; softmax in float32 (base 2); P rounded to bf16 for PV, as FlashAttention does.
//
// Tiling. The M dimension packs a sequence's (query row, head of the group) pairs, row-major:
// packed row r = i g + j. A CTA takes BM of them for one KV head, each warp 16 or 32, so
// each K/V tile it loads serves the whole query group (GQA packing: decode rows of a mixed batch
// fill g rows of a tile, not one). The CTA walks the key tiles of BN keys that its last row can
// see, from key 0 upward; K and V rows are copied into shared memory by cp.async (16-byte copies,
// zero-filled past the context), each addressed through the block table. Only the tiles that
// reach past a warp's first row's limit are masked; a warp skips the tiles none of its real rows
// can see (a wholly masked tile leaves a row's state bit for bit unchanged, so skipping it is
// exact; d = 128 also skips the padding rows past the sequence, e.g. of a decode row's tile).
// The online softmax keeps (m, l) per row in registers; a row that sees no key ends with l = 0
// and is written as zeros. A row's result depends only on its sequence (tile boundaries count
// from the sequence's first row, key tiles from key 0), never on the rest of the batch.
//
// Configurations:
//  - d = 128, two variants of one kernel (prefill_tc_kernel), both BM = 128 packed rows and
//    BN = 64 keys per tile, one barrier per tile, K/V in a cp.async ring (tile t + STAGES - 1 is
//    requested while tile t is computed):
//    - "wide": 8 warps x one m16 slice, 3 stages, Q fragments in registers; 136 KiB of shared
//      memory, ~200 registers, one CTA per SM. Best when the launch has too few CTAs to give
//      every SM two (e.g. one 1024-token prompt): eight warps per CTA hide latency.
//    - "dual" (FlashAttention-2's shape): 4 warps x two m16 slices (32 consecutive rows), 2
//      stages, Q fragments re-read from shared memory each tile; 102 KiB, 255 registers, two CTAs
//      per SM, so one CTA's softmax and barrier stalls overlap the other's MMAs. Each K/V
//      fragment read by ldmatrix feeds two MMAs instead of one: per 1 MFLOP (32 rows x 64 keys)
//      a warp reads 16 KiB of K, 16 KiB of V and 8 KiB of Q from shared memory, 40 KiB against
//      wide's 64 KiB.
//    The host picks dual when the grid has at least two CTAs per SM, else wide. Both run the same
//    per-row arithmetic in the same order (softmax_tile, MMAs over k ascending), so a row's bits
//    are the same under either: the choice, which depends on the whole launch, keeps outputs
//    batch invariant. NANOVLLM_PREFILL_D128=wide|dual forces a variant (tests, benchmarks).
//  - "narrow" (d = 64 and 256): BM = 64, 4 warps, BN = 64 / 32, K and V double-buffered, two
//    CTAs per SM. (At d = 256 the Q fragments and O accumulator of 16 rows fill the registers;
//    a wide d = 64 would need two CTAs per SM, i.e. 128 registers, and spills.)
//
// Grid (1-D): slot x / nkv, KV head x % nkv, so the KV heads of one slot run side by side.
// Slots enumerate (sequence, M tile) without reading device memory on the host: sequence s owns
// slots [floor(cu[s] g / BM) + s, floor(cu[s+1] g / BM) + s + 1), at least its
// ceil(q_len g / BM) tiles, so there are floor(T g / BM) + num_seqs slots; a CTA finds s by
// binary search over cu_seqlens_q and exits if it has no tile. A sequence's tiles are taken last
// first (they see the most keys), so a long prompt is scheduled longest first.
//
// Shared memory rows are padded by 16 bytes (row stride d + 8 elements), so the 8 rows an
// ldmatrix phase reads fall in distinct bank groups. Flops: 4 d g sum_rows(visible keys) per KV
// head; bytes: K/V once per (M tile, KV head), plus q and out.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace nanovllm::gpu {
namespace {

using namespace prefill;

// Narrow configuration (d = 64, 256).
constexpr int kThreads = 128;
constexpr int kBM = 64;  // packed rows per CTA: 4 warps x 16
// d = 128 configurations (both variants): 128 packed rows per CTA, 64 keys per tile.
constexpr int kWideBM = 128;
constexpr int kWideBN = 64;


template <int D, int BN>
__global__ void __launch_bounds__(kThreads, 2) prefill_narrow_kernel(const PrefillParams p) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  constexpr int LD = D + 8;   // shared row stride in elements (16 bytes of padding)
  constexpr int CH = D / 8;   // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [BM][LD], reused for the output tile
  bf16* sK = sQ + kBM * LD;                      // [2][BN][LD]
  bf16* sV = sK + 2 * BN * LD;                   // [2][BN][LD]

  // Which sequence and which of its tiles.
  const int kvh = static_cast<int>(blockIdx.x % p.nkv), g = p.group;
  Tile tl;
  if (!find_tile<kBM>(p, blockIdx.x / p.nkv, tl)) return;  // whole CTA: uniform
  const int s = tl.s, q_begin = tl.q_begin, q_len = tl.q_len, r0 = tl.r0, r_end = tl.r_end;
  const int ctx = clamped_context(p, s);
  const int key_base = ctx - q_len;                 // row i sees keys < key_base + i + 1
  const int k_last = key_base + (r_end - 1) / g + 1;  // keys the tile's last row sees
  const int k_free = key_base + r0 / g + 1;          // keys every row of the tile sees
  const int n_kv = k_last > 0 ? (k_last + BN - 1) / BN : 0;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  const int64_t kv_row = int64_t{p.nkv} * D;

  // Q tile (zero rows past the sequence).
  for (int i = tid; i < kBM * CH; i += kThreads) {
    const int r = i / CH, ch = i % CH, pr = r0 + r;
    const bool ok = pr < r_end;
    const bf16* src = ok ? p.qkv + int64_t{q_begin + pr / g} * p.qkv_stride +
                               int64_t{kvh * g + pr % g} * D + ch * 8
                         : p.qkv;
    cp_async16(sQ + r * LD + ch * 8, src, ok);
  }
  auto load_kv = [&](int t, int buf) {
    for (int i = tid; i < BN * CH; i += kThreads) {
      const int r = i / CH, ch = i % CH, key = t * BN + r;
      bool ok = key < ctx;
      int64_t off = 0;
      if (ok) {
        const int bi = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
        const int32_t blk = table[bi];
        ok = blk >= 0 && blk < p.num_blocks;
        off = (int64_t{blk} * p.block_size + (key - bi * p.block_size)) * kv_row + kvh * D + ch * 8;
      }
      const int dst = (buf * BN + r) * LD + ch * 8;
      cp_async16(sK + dst, ok ? p.k_cache + off : p.k_cache, ok);
      cp_async16(sV + dst, ok ? p.v_cache + off : p.v_cache, ok);
    }
  };
  if (n_kv > 0) load_kv(0, 0);
  cp_async_commit();

  // Per thread: rows a = warp*16 + lane/4 and a + 8 of the tile; accumulator columns
  // 2 (lane % 4) + {0, 1} of every n8 block.
  const int row_a = warp * 16 + lane / 4;
  int limit[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) limit[h] = key_base + (r0 + row_a + 8 * h) / g + 1;
  float o[D / 8][4];
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j) o[nb][j] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  uint32_t qf[D / 16][4];

  for (int t = 0; t < n_kv; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_kv) load_kv(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();  // everything but the tile just issued has landed
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        ldmatrix_x4(qf[kk], sQ + (warp * 16 + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
    }

    // S = Q K^T for this warp's 16 rows and BN keys.
    float sc[BN / 8][4];
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) sc[nb][j] = 0.f;
    const bf16* kb = sK + buf * BN * LD;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int nb2 = 0; nb2 < BN / 16; ++nb2) {
        uint32_t b[4];
        ldmatrix_x4(b, kb + (nb2 * 16 + lane % 8 + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
        mma_bf16(sc[2 * nb2], qf[kk], b[0], b[1]);
        mma_bf16(sc[2 * nb2 + 1], qf[kk], b[2], b[3]);
      }

    // Online softmax, base 2. Masking only where the tile reaches past k_free.
    const bool masked = (t + 1) * BN > k_free;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float v = sc[nb][j] * p.scale_log2;
        if (masked && t * BN + nb * 8 + (lane % 4) * 2 + (j & 1) >= limit[j >> 1]) v = -INFINITY;
        sc[nb][j] = v;
        mx[j >> 1] = fmaxf(mx[j >> 1], v);
      }
    float m_use[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float m_new = fmaxf(m_run[h], mx[h]);
      m_use[h] = m_new == -INFINITY ? 0.f : m_new;  // nothing visible yet: p = 0, no NaN
      const float alpha = exp2f(m_run[h] - m_use[h]);
      m_run[h] = m_new;
      l_run[h] *= alpha;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        o[nb][2 * h] *= alpha;
        o[nb][2 * h + 1] *= alpha;
      }
    }
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float e = exp2f(sc[nb][j] - m_use[j >> 1]);
        sc[nb][j] = e;
        l_run[j >> 1] += e;
      }

    // O += P V: the S accumulators of two n8 blocks are the A fragment of one k16 step.
    const bf16* vb = sV + buf * BN * LD;
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) {
      const uint32_t a[4] = {pack_bf16x2(sc[2 * kc][0], sc[2 * kc][1]),
                             pack_bf16x2(sc[2 * kc][2], sc[2 * kc][3]),
                             pack_bf16x2(sc[2 * kc + 1][0], sc[2 * kc + 1][1]),
                             pack_bf16x2(sc[2 * kc + 1][2], sc[2 * kc + 1][3])};
#pragma unroll
      for (int db = 0; db < D / 16; ++db) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, vb + (kc * 16 + lane % 8 + ((lane / 8) % 2) * 8) * LD + db * 16 + (lane / 16) * 8);
        mma_bf16(o[2 * db], a, b[0], b[1]);
        mma_bf16(o[2 * db + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's loads
  }

  // Normalise, stage the tile in sQ, write whole 16-byte chunks of each valid row.
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float inv = row_inv_denominator(l_run[h]);
    bf16* dst = sQ + (row_a + 8 * h) * LD + (lane % 4) * 2;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb)
      *reinterpret_cast<uint32_t*>(dst + nb * 8) = pack_bf16x2(o[nb][2 * h] * inv, o[nb][2 * h + 1] * inv);
  }
  __syncthreads();
  const int64_t out_stride = int64_t{p.nh} * D;
  for (int i = tid; i < kBM * CH; i += kThreads) {
    const int r = i / CH, ch = i % CH, pr = r0 + r;
    if (pr >= r_end) continue;
    bf16* dst = p.out + int64_t{q_begin + pr / g} * out_stride + int64_t{kvh * g + pr % g} * D + ch * 8;
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sQ + r * LD + ch * 8);
  }
}

// The d = 128 tensor-core kernel (header), both variants: WARPS warps, each owning MT
// consecutive m16 slices of the BM = 16 WARPS MT packed rows, BN = 64 keys per tile, K/V in a
// STAGES-deep cp.async ring. wide = <8, 1, 3>, dual = <4, 2, 2>.
//
// Barrier discipline: the only barrier of iteration t comes after tile t has landed
// (wait_group) and before the copies of tile t + STAGES - 1 are issued into stage
// (t + STAGES - 1) % STAGES, which is the stage of tile t - 1: every warp passed that barrier
// after finishing tile t - 1, so the refill never overwrites a tile still being read. sQ is
// written once (group 0) and only rewritten after the loop, behind wait_group 0 and a barrier.
//
// Q: with one slice per warp its fragments stay in registers for the whole key walk; with two,
// registers hold the 2 x 64 output accumulators and 2 x 32 scores instead, and the fragments are
// re-read from shared memory for every tile, as FlashAttention-2 does (each one feeds BN / 8 MMAs).
template <int D, int WARPS, int MT, int STAGES, int MIN_CTAS>
__global__ void __launch_bounds__(WARPS * 32, MIN_CTAS) prefill_tc_kernel(const PrefillParams p) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  constexpr int kThr = WARPS * 32;
  constexpr int BM = 16 * WARPS * MT, BN = kWideBN;
  constexpr int LD = D + 8;                    // shared row stride (16 bytes of padding)
  constexpr int CH = D / 8;                    // 16-byte chunks per row
  constexpr int kRowsPerPass = kThr / CH;      // K/V rows one pass of the CTA copies
  constexpr int kPasses = BN / kRowsPerPass;   // passes per K/V tile
  constexpr bool kQInRegs = MT == 1;
  static_assert(kThr % CH == 0 && BN % kRowsPerPass == 0, "copy mapping");
  static_assert(STAGES >= 2, "at least double buffering");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [BM][LD], reused for the output tile
  bf16* sK = sQ + BM * LD;                       // [STAGES][BN][LD]
  bf16* sV = sK + STAGES * BN * LD;              // [STAGES][BN][LD]

  const int kvh = static_cast<int>(blockIdx.x % p.nkv), g = p.group;
  Tile tl;
  if (!find_tile<BM>(p, blockIdx.x / p.nkv, tl)) return;  // whole CTA: uniform
  const TileKeys keys = tile_keys<BN>(p, tl);
  const int ctx = keys.ctx, key_base = keys.key_base, n_kv = keys.n_kv;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int32_t* table = p.block_tables + int64_t{tl.s} * p.max_blocks;
  const int64_t kv_row = int64_t{p.nkv} * D;

  // Q tile (zero rows past the sequence).
  for (int i = tid; i < BM * CH; i += kThr) {
    const int r = i / CH, ch = i % CH, pr = tl.r0 + r;
    const bool ok = pr < tl.r_end;
    const bf16* src = ok ? p.qkv + int64_t{tl.q_begin + pr / g} * p.qkv_stride +
                               int64_t{kvh * g + pr % g} * D + ch * 8
                         : p.qkv;
    cp_async16(sQ + r * LD + ch * 8, src, ok);
  }

  // K/V tile t into `stage`. Each thread copies one 16-byte chunk column of kPasses rows, in
  // batches of kBatch: the block-table reads of a batch are issued before its copies, so their
  // latencies overlap (a batch, not all kPasses rows, to bound the registers it holds).
  constexpr int kBatch = 4;
  static_assert(kPasses % kBatch == 0, "whole batches");
  const int cp_row = tid / CH, cp_col = (tid % CH) * 8;
  auto load_kv = [&](int t, int stage) {
#pragma unroll
    for (int i0 = 0; i0 < kPasses; i0 += kBatch) {
      int64_t off[kBatch];
      bool ok[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int key = t * BN + cp_row + (i0 + i) * kRowsPerPass;
        ok[i] = key < ctx;
        off[i] = 0;
        if (ok[i]) {
          const int bi = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
          const int32_t blk = table[bi];
          ok[i] = blk >= 0 && blk < p.num_blocks;  // a bad id reads as a zero key and value
          off[i] = (int64_t{blk} * p.block_size + (key - bi * p.block_size)) * kv_row + kvh * D + cp_col;
        }
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int dst = (stage * BN + cp_row + (i0 + i) * kRowsPerPass) * LD + cp_col;
        cp_async16(sK + dst, ok[i] ? p.k_cache + off[i] : p.k_cache, ok[i]);
        cp_async16(sV + dst, ok[i] ? p.v_cache + off[i] : p.v_cache, ok[i]);
      }
    }
  };
  // Prologue: group 0 = Q and tile 0, group s = tile s for s < STAGES - 1 (groups may be empty:
  // the count is what cp.async.wait_group relies on). Iteration t commits group t + STAGES - 1.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n_kv) load_kv(s, s);
    cp_async_commit();
  }

  // Per thread: rows a = wrow + 16 mt + lane/4 and a + 8 of the tile for each slice mt;
  // accumulator columns 2 (lane % 4) + {0, 1} of every n8 block.
  const int wrow = warp * MT * 16;  // this warp's first row in the tile
  // Keys every row of this warp sees, and keys its last real row sees (rows past the sequence
  // are never written, so the tiles only they would see are skipped; a warp with no real row
  // skips every tile).
  const int warp_free = key_base + (tl.r0 + wrow) / g + 1;
  const int warp_rows_end = min(tl.r_end, tl.r0 + wrow + MT * 16);
  const int warp_last = warp_rows_end > tl.r0 + wrow ? key_base + (warp_rows_end - 1) / g + 1 : 0;
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) o[mt][nb][j] = 0.f;
  float m_run[MT][2], l_run[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m_run[mt][h] = -INFINITY;
      l_run[mt][h] = 0.f;
    }
  uint32_t qreg[kQInRegs ? D / 16 : 1][4];  // the Q fragments when they stay in registers
  // A fragment of Q rows [row, row + 16), dims [16 kk, 16 kk + 16).
  auto load_q = [&](uint32_t(&f)[4], int row, int kk) {
    ldmatrix_x4(f, sQ + (row + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
  };

  // Iteration t's share of the pipeline, the same for every warp: wait for tile t, then refill
  // the stage tile t - 1 used with tile t + STAGES - 1.
  auto advance = [&](int t) {
    cp_async_wait<STAGES - 2>();  // groups 0 .. t have landed: Q and tile t
    // Not __syncthreads (bar.sync = barrier.sync.aligned, which requires every thread to reach
    // the same instruction): warps come here from two different loops below. The non-aligned
    // form counts arriving threads from any instruction, with the same memory ordering.
    asm volatile("barrier.sync 0;" ::: "memory");
    if (t + STAGES - 1 < n_kv) load_kv(t + STAGES - 1, (t + STAGES - 1) % STAGES);
    cp_async_commit();
  };
  // The tiles this warp computes: past them none of its real rows sees a key, so they would
  // leave (m, l, o) unchanged. The warp still passes the barriers of the rest of the walk, in a
  // second loop (the non-aligned barrier in advance() counts arriving threads, whichever
  // instruction they reach it from). Two loops rather than a skip inside one: it keeps dual at 255 registers
  // without spills.
  const int n_warp = warp_last > 0 ? min(n_kv, (warp_last + BN - 1) / BN) : 0;
  for (int t = 0; t < n_warp; ++t) {
    advance(t);
    if constexpr (kQInRegs) {
      if (t == 0) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) load_q(qreg[kk], wrow, kk);
      }
    }
    const int stage = t % STAGES;

    // S = Q K^T for this warp's MT slices and BN keys: each K fragment feeds 2 MT MMAs.
    float sc[MT][BN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int j = 0; j < 4; ++j) sc[mt][nb][j] = 0.f;
    const bf16* kb = sK + stage * BN * LD;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qf[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQInRegs) {
#pragma unroll
          for (int i = 0; i < 4; ++i) qf[mt][i] = qreg[kk][i];
        } else {
          load_q(qf[mt], wrow + 16 * mt, kk);
        }
      }
#pragma unroll
      for (int nb2 = 0; nb2 < BN / 16; ++nb2) {
        uint32_t b[4];
        ldmatrix_x4(b, kb + (nb2 * 16 + lane % 8 + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(sc[mt][2 * nb2], qf[mt], b[0], b[1]);
          mma_bf16(sc[mt][2 * nb2 + 1], qf[mt], b[2], b[3]);
        }
      }
    }

    // Online softmax. Masking only where the tile reaches past a row of this warp.
    const bool masked = (t + 1) * BN > warp_free;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      // Keys rows a and a + 8 see; only needed (and computed: they are divisions) in masked tiles.
      int limit[2] = {0, 0};
      if (masked) {
#pragma unroll
        for (int h = 0; h < 2; ++h) limit[h] = key_base + (tl.r0 + wrow + 16 * mt + lane / 4 + 8 * h) / g + 1;
      }
      float alpha[2];
      softmax_tile<BN>(sc[mt], m_run[mt], l_run[mt], alpha, masked, t * BN, limit, p.scale_log2, lane);
      // Rescaling by 1 is the identity, so the warp skips it when no row's maximum moved.
      if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) {
          o[mt][nb][0] *= alpha[0];
          o[mt][nb][1] *= alpha[0];
          o[mt][nb][2] *= alpha[1];
          o[mt][nb][3] *= alpha[1];
        }
      }
    }
    // O += P V, P rounded to bf16: the S accumulators of n8 blocks 2 kc and 2 kc + 1 are the
    // A fragment of k16 step kc. Each V fragment feeds 2 MT MMAs.
    const bf16* vb = sV + stage * BN * LD;
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) {
      uint32_t pf[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pf[mt][0] = pack_bf16x2(sc[mt][2 * kc][0], sc[mt][2 * kc][1]);
        pf[mt][1] = pack_bf16x2(sc[mt][2 * kc][2], sc[mt][2 * kc][3]);
        pf[mt][2] = pack_bf16x2(sc[mt][2 * kc + 1][0], sc[mt][2 * kc + 1][1]);
        pf[mt][3] = pack_bf16x2(sc[mt][2 * kc + 1][2], sc[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int db = 0; db < D / 16; ++db) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, vb + (kc * 16 + lane % 8 + ((lane / 8) % 2) * 8) * LD + db * 16 + (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(o[mt][2 * db], pf[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * db + 1], pf[mt], b[2], b[3]);
        }
      }
    }
    // No barrier here: the next iteration's barrier comes before anything refills this stage.
  }
  for (int t = n_warp; t < n_kv; ++t) advance(t);

  // Normalise, stage the tile in sQ (every warp is past its Q reads, no copy is in flight),
  // write whole 16-byte chunks of each valid row.
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float inv = row_inv_denominator(l_run[mt][h]);
      bf16* dst = sQ + (wrow + 16 * mt + lane / 4 + 8 * h) * LD + (lane % 4) * 2;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb)
        *reinterpret_cast<uint32_t*>(dst + nb * 8) =
            pack_bf16x2(o[mt][nb][2 * h] * inv, o[mt][nb][2 * h + 1] * inv);
    }
  __syncthreads();
  // The tile again: re-derived rather than kept in registers across the key walk.
  find_tile<BM>(p, blockIdx.x / p.nkv, tl);
  const int kvh_o = static_cast<int>(blockIdx.x % p.nkv);
  const int64_t out_stride = int64_t{p.nh} * D;
  for (int i = tid; i < BM * CH; i += kThr) {
    const int r = i / CH, ch = i % CH, pr = tl.r0 + r;
    if (pr >= tl.r_end) continue;
    bf16* dst = p.out + int64_t{tl.q_begin + pr / g} * out_stride + int64_t{kvh_o * g + pr % g} * D + ch * 8;
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sQ + r * LD + ch * 8);
  }
}

// The d = 128 kernel in one variant (see the header for which and why).
template <int WARPS, int MT, int STAGES, int MIN_CTAS>
void launch_d128(const PrefillParams& p, int64_t T, cudaStream_t stream) {
  constexpr int D = 128, BM = 16 * WARPS * MT;
  constexpr size_t smem = size_t(BM + 2 * STAGES * kWideBN) * (D + 8) * sizeof(bf16);
  const auto kernel = prefill_tc_kernel<D, WARPS, MT, STAGES, MIN_CTAS>;
  static const bool once = (allow_smem(kernel, smem), true);
  (void)once;
  detail::launch(kernel, grid_size(p, T, BM), WARPS * 32, smem, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

// The d = 128 kernel for a launch. On Hopper (sm_90a code, a 9.x device): the wgmma kernel,
// for every launch, so that a row's bits never depend on the batch. Elsewhere: dual when the
// launch has CTAs for two per SM (its regime: two CTAs overlap each other's softmax and
// barriers, and each K/V fragment feeds two m16 slices), wide otherwise (a small launch leaves
// SMs with one CTA, where eight warps of 16 rows hide latency better than four of 32); both give
// the same bits for every row, so that choice, which depends on the whole batch, keeps outputs
// batch invariant too. NANOVLLM_PREFILL_D128=wide|dual|wgmma forces one (tests, benchmarks).
enum class D128 { wide, dual, wgmma };
D128 pick_d128(const PrefillParams& p, int64_t T) {
  if (const char* force = std::getenv("NANOVLLM_PREFILL_D128")) {
    if (std::strcmp(force, "wide") == 0) return D128::wide;
    if (std::strcmp(force, "dual") == 0) return D128::dual;
    if (std::strcmp(force, "wgmma") == 0) {
      detail::require(wgmma_available(), "paged_attention_prefill",
                      "NANOVLLM_PREFILL_D128=wgmma needs sm_90a code and a compute capability 9.x device");
      return D128::wgmma;
    }
  }
  if (wgmma_available()) return D128::wgmma;
  int dev = 0, sms = 0;
  NANOVLLM_CUDA_CHECK(cudaGetDevice(&dev));
  NANOVLLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return grid_size(p, T, kWideBM) >= 2u * static_cast<unsigned>(sms) ? D128::dual : D128::wide;
}

template <int D, int BN>
void launch_narrow(const PrefillParams& p, int64_t T, cudaStream_t stream) {
  constexpr size_t smem = size_t(kBM + 4 * BN) * (D + 8) * sizeof(bf16);
  static const bool once = (allow_smem(prefill_narrow_kernel<D, BN>, smem), true);
  (void)once;
  detail::launch(prefill_narrow_kernel<D, BN>, grid_size(p, T, kBM), kThreads, smem, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool paged_attention_prefill_uses_wgmma() { return prefill::wgmma_available(); }

void paged_attention_prefill(const void* qkv, int64_t T, int nh, int nkv, int d, float scale,
                             const void* k_cache, const void* v_cache, int block_size,
                             int64_t num_blocks, int num_seqs, const int32_t* cu_seqlens_q,
                             const int32_t* context_lens, const int32_t* block_tables,
                             int max_blocks_per_seq, void* out, cudaStream_t stream) {
  const char* op = "paged_attention_prefill";
  using detail::require;
  require(T >= 0, op, "T must be non-negative, got " + std::to_string(T));
  require(nh > 0 && nkv > 0 && nh % nkv == 0, op,
          "need nh, nkv > 0 with nh a multiple of nkv; got nh=" + std::to_string(nh) +
              " nkv=" + std::to_string(nkv));
  require(nkv <= 65535, op, "nkv must be at most 65535");
  require(d == 64 || d == 128 || d == 256, op, "head_dim must be 64, 128 or 256, got " + std::to_string(d));
  require(block_size >= 1, op, "block_size must be positive, got " + std::to_string(block_size));
  require(num_blocks >= 0, op, "num_blocks must be non-negative");
  require(max_blocks_per_seq >= 1, op, "max_blocks_per_seq must be positive");
  require(int64_t{max_blocks_per_seq} * block_size <= INT32_MAX, op,
          "max_blocks_per_seq * block_size must fit in int32");
  require(std::isfinite(scale), op, "scale must be finite");
  if (T == 0) return;
  require(num_seqs >= 1, op, "num_seqs must be positive when T > 0");
  require(T * (nh / nkv) + int64_t{num_seqs} * kBM < INT32_MAX &&
              (T * (nh / nkv) / kBM + num_seqs) * nkv < INT32_MAX,
          op, "T * (nh / nkv) too large for one launch");
  require(qkv && k_cache && v_cache && cu_seqlens_q && context_lens && block_tables && out, op,
          "null pointer");
  require(detail::aligned16(qkv) && detail::aligned16(k_cache) && detail::aligned16(v_cache) &&
              detail::aligned16(out),
          op, "qkv, k_cache, v_cache and out must be 16-byte aligned");

  PrefillParams p{};
  p.qkv = static_cast<const bf16*>(qkv);
  p.k_cache = static_cast<const bf16*>(k_cache);
  p.v_cache = static_cast<const bf16*>(v_cache);
  p.cu_seqlens_q = cu_seqlens_q;
  p.context_lens = context_lens;
  p.block_tables = block_tables;
  p.out = static_cast<bf16*>(out);
  p.qkv_stride = int64_t{nh + 2 * nkv} * d;
  p.num_blocks = num_blocks;
  p.nh = nh;
  p.nkv = nkv;
  p.group = nh / nkv;
  p.num_seqs = num_seqs;
  p.block_size = block_size;
  p.block_shift = -1;
  if ((block_size & (block_size - 1)) == 0)
    for (p.block_shift = 0; (1 << p.block_shift) < block_size; ++p.block_shift) {
    }
  p.max_blocks = max_blocks_per_seq;
  p.scale_log2 = scale * 1.4426950408889634f;
  switch (d) {
    case 64: launch_narrow<64, 64>(p, T, stream); break;
    case 128:
      switch (pick_d128(p, T)) {
        case D128::wgmma: launch_wgmma_d128(p, T, stream); break;
        case D128::dual: launch_d128<4, 2, 2, 2>(p, T, stream); break;
        case D128::wide: launch_d128<8, 1, 3, 1>(p, T, stream); break;
      }
      break;
    default: launch_narrow<256, 32>(p, T, stream); break;
  }
}

}  // namespace nanovllm::gpu
