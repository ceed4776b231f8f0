// Paged prefill attention at head_dim 128 on Hopper's warpgroup MMA (wgmma, sm_90a), as
// FlashAttention-3 does, with the same contract, tile map and per-row softmax as the mma.sync
// kernels (paged_attention_prefill.cu's header): GQA packing of (query row, head of the group)
// pairs into 128 packed rows per CTA, key tiles walked from key 0, rows that see no key written
// as zeros, a row's bits independent of the rest of the batch.
//
// CTA: 384 threads, three warpgroups. Warpgroups 0 and 1 are consumers, each owning 64
// consecutive packed rows; warpgroup 2 is the producer, which copies Q once and the K/V tiles of
// 128 keys into a kStages-deep ring with cp.async: with blocks of a multiple of 128 keys (the
// engine's 256) a tile lies inside one block, one block-table read per tile; with other block
// sizes each key row is addressed through the table (paged K/V rules out one TMA box per tile
// when blocks are smaller than a tile). The producer gives its registers to the consumers
// (setmaxnreg: 40 and 232 per thread; a whole producer warpgroup because registers are split
// between the SM's four schedulers, each of which runs one producer and two consumer warps).
// Producer and consumers meet only at mbarriers: full[s] (the producer's 128 threads arrive once
// their copies of the stage have landed, after a proxy fence: the MMAs read shared memory
// through the async proxy) and empty[s] (the 256 consumer threads arrive once their MMAs on the
// stage are complete). Besides, the two consumer warpgroups take turns to issue their S products
// (named barriers, the consumer loop's "ping-pong"), so that one's softmax runs while the
// other's MMAs hold the tensor cores.
//
// Per key tile, each consumer warpgroup: S = Q K^T (8 wgmma m64n128k16, both operands in shared
// memory, K-major), the online softmax on the accumulator fragments (softmax_tile, the code the
// mma.sync kernels run, on 16-row slices: the wgmma accumulator layout is the m16n8 one repeated
// over N), P rounded to bf16 in registers, O += P V (8 wgmma with P as the register operand and V
// MN-major in shared memory). Tiles past the warpgroup's last real row are skipped (exact: a
// wholly masked tile leaves a row's state unchanged).
//
// Shared memory: every tile (Q: 128 rows; K, V: 128 keys) is two panels of 64 elements (128
// bytes) per row, d 0-63 then d 64-127, rows at a 128-byte stride, with the 128-byte swizzle
// (16-byte chunk c of row r stored at chunk c ^ (r % 8)), which the MMA descriptors name and
// which makes the producer's and the epilogue's 16-byte accesses conflict-free. Panels start on
// 1024-byte boundaries, where the swizzle pattern repeats. 224 KiB in all: one CTA per SM.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"

namespace nanovllm::gpu::prefill {
namespace {

constexpr int kD = 128;
constexpr int kBM = 128;                   // packed rows per CTA: 2 consumer warpgroups x 64
constexpr int kBN = 128;                   // keys per tile
constexpr int kStages = 3;                 // K/V ring depth
constexpr int kConsumers = 256;             // warpgroups 0 and 1
constexpr int kProducers = 128;             // warpgroup 2
constexpr int kThreads = kConsumers + kProducers;
constexpr int kProducerRegs = 40, kConsumerRegs = 232;  // 4 x 40 + 8 x 232 <= 65536 / 32
constexpr int kRowBytes = 128;             // one 64-element panel row: the swizzle width
constexpr int kQPanel = kBM * kRowBytes;   // bytes of one Q panel (16 KiB)
constexpr int kKVPanel = kBN * kRowBytes;  // bytes of one K or V panel (16 KiB)
constexpr int kQBytes = 2 * kQPanel;
constexpr int kKVBytes = 2 * kKVPanel;     // one K (or V) tile
constexpr size_t kSmemBytes = 1024 /* alignment slack */ + kQBytes + size_t(2) * kStages * kKVBytes +
                              2 * kStages * sizeof(uint64_t);

// Byte offset of 16-byte chunk c (elements 8c .. 8c + 7) of row r in a two-panel tile.
__device__ __forceinline__ uint32_t swz(int r, int c, int panel_bytes) {
  return uint32_t((c >> 3) * panel_bytes + r * kRowBytes + (((c & 7) ^ (r & 7)) << 4));
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

// wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride
// byte offsets (K-major: the stride is between 8-row groups, the leading offset unused; MN-major:
// the leading offset is between 64-element panels, the stride between 8-row groups along K).
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32) |
         (uint64_t(1) << 62);
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Arrive with release semantics: this thread's earlier writes are visible to a waiter.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_addr(bar)) : "memory");
}
// Waits (acquire) until the phase of the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// Orders this thread's generic-proxy writes to shared memory (cp.async, stores) before later
// async-proxy reads of it (wgmma operands).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Until at most N of this warpgroup's committed groups are in flight (they complete in order).
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// After a wait: the accumulators are read only from here on (the compiler sees the MMAs as
// writing them when issued, not when complete).
__device__ __forceinline__ void reg_fence(float (&d)[16][4]) {
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(d[j][i])::"memory");
}

// The 64 accumulator operands of an m64n128 f32 wgmma (d[n8 block][4], the layout of the
// m16n8 accumulator repeated over N), as asm outputs, and their slots %0 .. %63.
#define WGMMA_ACC64(d) \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), \
  "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
  "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
  "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), \
  "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), \
  "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
  "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
  "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), \
  "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), \
  "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), \
  "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), \
  "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), \
  "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), \
  "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), \
  "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), \
  "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
#define WGMMA_ACC64_SLOTS \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// d (64 x 128 f32, this warpgroup's accumulator fragment) {=, +=} A B, A (64 x 16) and B
// (16 x 128) in shared memory, both K-major (S = Q K^T). scale_d = 0 overwrites d.
__device__ __forceinline__ void wgmma_ss(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      WGMMA_ACC64_SLOTS
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : WGMMA_ACC64(d)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}
// d (64 x 128 f32) += A B with A (64 x 16 bf16) in registers (the accumulator layout's
// fragment, four bf16x2 per thread) and B (16 x 128) in shared memory, MN-major (O += P V: V is
// stored key-major, d contiguous).
__device__ __forceinline__ void wgmma_rs_tn(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      WGMMA_ACC64_SLOTS
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : WGMMA_ACC64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

#endif  // sm_90a

// cp_async16 to a shared-memory address already converted (the producer keeps its tile's
// destinations as 32-bit offsets: it runs on 40 registers).
__device__ __forceinline__ void cp_async16_at(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

// Waits for this thread's cp.async groups until at most `pending` are in flight.
__device__ __forceinline__ void cp_async_wait_upto(int pending) {
  if (pending <= 0) cp_async_wait<0>();
  else if (pending == 1) cp_async_wait<1>();
  else cp_async_wait<2>();
}

__global__ void __launch_bounds__(kThreads, 1) prefill_wgmma_kernel(const PrefillParams p) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(kStages >= 2 && kStages <= 3, "cp_async_wait_upto covers up to 2 pending groups");
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  unsigned char* sQ = base;                     // [2 panels][kBM rows][128 B]; the output tile at the end
  unsigned char* sK = sQ + kQBytes;             // [kStages][2 panels][kBN keys][128 B]
  unsigned char* sV = sK + kStages * kKVBytes;  // likewise
  uint64_t* full = reinterpret_cast<uint64_t*>(sV + kStages * kKVBytes);
  uint64_t* empty = full + kStages;

  const int kvh = static_cast<int>(blockIdx.x % p.nkv), g = p.group;
  Tile tl;
  if (!find_tile<kBM>(p, blockIdx.x / p.nkv, tl)) return;  // whole CTA: uniform
  const TileKeys keys = tile_keys<kBN>(p, tl);
  const int ctx = keys.ctx, key_base = keys.key_base, n_kv = keys.n_kv;
  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], kProducers);
      mbar_init(&empty[s], kConsumers);
    }
  }
  __syncthreads();

  if (tid >= kConsumers) {
    // ---- Producer warpgroup ----
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    const int ptid = tid - kConsumers;
    constexpr int kRowStep = kProducers / 16;  // rows per pass
    const int col = ptid % 16;                 // the 16-byte chunk this thread copies in each row
    const int row0 = ptid / 16;                // rows row0, row0 + kRowStep, ...
    const int32_t* table = p.block_tables + int64_t{tl.s} * p.max_blocks;
    const int64_t kv_row = int64_t{p.nkv} * kD;
    // Q, zero rows past the sequence; not when no key is visible (the consumers then write
    // zeros through sQ at once, which a Q copy still landing would overwrite).
    for (int r = row0; n_kv > 0 && r < kBM; r += kRowStep) {
      const int pr = tl.r0 + r;
      const bool ok = pr < tl.r_end;
      const bf16* src = ok ? p.qkv + int64_t{tl.q_begin + pr / g} * p.qkv_stride + int64_t{kvh * g + pr % g} * kD + col * 8
                           : p.qkv;
      cp_async16(sQ + swz(r, col, kQPanel), src, ok);
    }
    // K/V tile t into `stage`. This thread copies chunk `col` of rows row0 + kRowStep i, i <
    // kRows; kRowStep is a multiple of 8, so all its rows share one swizzle phase and row i's
    // destination is the first one's plus i kRowStep rows.
    constexpr int kRows = kBN / kRowStep;
    const uint32_t dst0 = swz(row0, col, kKVPanel);
    // Blocks of a multiple of kBN keys (the engine's 256): each tile lies inside one block, so
    // one block-table read per tile, and consecutive rows are kv_row elements apart. The
    // producer's address arithmetic, not the copies, bounded the kernel before (Nsight Compute:
    // the consumers waited on `full` while the producer never waited on `empty`).
    auto load_kv_in_block = [&](int t, int stage) {
      const uint32_t dk = smem_addr(sK + stage * kKVBytes) + dst0, dv = dk + kStages * kKVBytes;
      const int key0 = t * kBN;
      const int bi = p.block_shift >= 0 ? key0 >> p.block_shift : key0 / p.block_size;
      const int32_t blk = table[bi];
      const bool blk_ok = blk >= 0 && blk < p.num_blocks;  // a bad id reads as zero keys and values
      const int64_t off = blk_ok ? (int64_t{blk} * p.block_size + (key0 - bi * p.block_size) + row0) * kv_row +
                                       kvh * kD + col * 8
                                 : 0;
      const bf16* k_src = p.k_cache + off;
      const bf16* v_src = p.v_cache + off;
      const int64_t step = blk_ok ? kRowStep * kv_row : 0;
      const int rows_left = blk_ok ? ctx - key0 - row0 : 0;  // rows i with i kRowStep < rows_left are real
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const bool ok = i * kRowStep < rows_left;
        cp_async16_at(dk + i * kRowStep * kRowBytes, ok ? k_src + i * step : p.k_cache, ok);
        cp_async16_at(dv + i * kRowStep * kRowBytes, ok ? v_src + i * step : p.v_cache, ok);
      }
    };
    // Any other block size: rows in batches whose block-table reads are issued first.
    auto load_kv_rows = [&](int t, int stage) {
      unsigned char* dk = sK + stage * kKVBytes + dst0;
      unsigned char* dv = sV + stage * kKVBytes + dst0;
      constexpr int kBatch = 4;
      static_assert(kRows % kBatch == 0, "whole batches");
#pragma unroll 1
      for (int i0 = 0; i0 < kRows; i0 += kBatch) {
        int64_t off[kBatch];
        bool ok[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const int key = t * kBN + row0 + kRowStep * (i0 + i);
          ok[i] = key < ctx;
          off[i] = 0;
          if (ok[i]) {
            const int bi = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
            const int32_t blk = table[bi];
            ok[i] = blk >= 0 && blk < p.num_blocks;  // a bad id reads as a zero key and value
            off[i] = (int64_t{blk} * p.block_size + (key - bi * p.block_size)) * kv_row + kvh * kD + col * 8;
          }
        }
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const uint32_t dst = (i0 + i) * kRowStep * kRowBytes;
          cp_async16(dk + dst, ok[i] ? p.k_cache + off[i] : p.k_cache, ok[i]);
          cp_async16(dv + dst, ok[i] ? p.v_cache + off[i] : p.v_cache, ok[i]);
        }
      }
    };
    const bool in_block = p.block_size % kBN == 0;
    auto load_kv = [&](int t, int stage) {
      if (in_block) load_kv_in_block(t, stage);
      else load_kv_rows(t, stage);
    };
    // Commit group t holds tile t (group 0 also Q); the prologue fills the ring, iteration t >= 1
    // commits one group (tile t - 1 + kStages, or none), so tile t is the t-th group.
    for (int s = 0; s < kStages; ++s) {
      if (s < n_kv) load_kv(s, s);
      cp_async_commit();
    }
    for (int t = 0; t < n_kv; ++t) {
      const int committed = kStages + (t > 0 ? t - 1 : 0);
      cp_async_wait_upto(committed - (t + 1));
      fence_proxy_async();
      mbar_arrive(&full[t % kStages]);
      if (t >= 1) {
        const int next = t - 1 + kStages, stage = (t - 1) % kStages;
        if (next < n_kv) {
          mbar_wait(&empty[stage], ((t - 1) / kStages) & 1);  // the consumers are done with tile t - 1
          load_kv(next, stage);
        }
        cp_async_commit();
      }
    }
    cp_async_wait<0>();
    return;
  }

  // ---- Consumer warpgroups ----
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
  const int wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const int wrow = wg * 64;  // this warpgroup's first row in the tile
  const int rows_end = min(tl.r_end, tl.r0 + wrow + 64);
  const int wg_last = rows_end > tl.r0 + wrow ? key_base + (rows_end - 1) / g + 1 : 0;
  const int n_wg = wg_last > 0 ? min(n_kv, (wg_last + kBN - 1) / kBN) : 0;  // tiles it computes
  const int wg_free = key_base + (tl.r0 + wrow) / g + 1;  // keys every row of it sees
  int limit[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) limit[h] = key_base + (tl.r0 + wrow + warp * 16 + lane / 4 + 8 * h) / g + 1;
  float o[16][4], sc[16][4];
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[j][i] = sc[j][i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  const uint32_t q_base = smem_addr(sQ) + wrow * kRowBytes;

  // Ping-pong (FlashAttention-3's warp scheduling): the warpgroups take turns to issue their S
  // products, warpgroup 0 first, so that one's softmax runs while the other's products hold the
  // tensor cores. Named barriers 1 and 2 (256 threads: one warpgroup syncs, the other arrives)
  // are the turns; each warpgroup takes one turn per key tile, computed or skipped, and the
  // arrivals pair up exactly (warpgroup 1 pre-arrives once and skips its last arrival).
  const int my_turn = 1 + wg, other_turn = 2 - wg;
  if (wg == 1 && n_kv > 0) asm volatile("bar.arrive 1, 256;\n" ::: "memory");
  // The tiles this warpgroup computes, t < n_wg. (No product stays in flight across
  // iterations: with S, O and P live, the registers leave ptxas no room to pipeline them.)
  for (int t = 0; t < n_wg; ++t) {
    const int stage = t % kStages;
    mbar_wait(&full[stage], (t / kStages) & 1);
    asm volatile("bar.sync %0, 256;\n" ::"r"(my_turn) : "memory");
    const uint32_t k_base = smem_addr(sK + stage * kKVBytes), v_base = smem_addr(sV + stage * kKVBytes);
    // S = Q K^T: k step kk is dims 16 kk .. 16 kk + 15, 32 bytes into panel kk / 4.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk)
      wgmma_ss(sc, make_desc(q_base + (kk >> 2) * kQPanel + (kk & 3) * 32, 16, 1024),
               make_desc(k_base + (kk >> 2) * kKVPanel + (kk & 3) * 32, 16, 1024), kk > 0);
    wgmma_commit();
    if (!(wg == 1 && t == n_kv - 1)) asm volatile("bar.arrive %0, 256;\n" ::"r"(other_turn) : "memory");
    wgmma_wait<0>();
    reg_fence(sc);

    const bool masked = (t + 1) * kBN > wg_free;
    float alpha[2];
    softmax_tile<kBN, true>(sc, m_run, l_run, alpha, masked, t * kBN, limit, p.scale_log2, lane);
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        o[j][0] *= alpha[0];
        o[j][1] *= alpha[0];
        o[j][2] *= alpha[1];
        o[j][3] *= alpha[1];
      }
    }
    // P in bf16 as the register operand: the accumulators of n8 blocks 2 kk and 2 kk + 1 are
    // the A fragment of k step kk (keys 16 kk .. 16 kk + 15).
    uint32_t pf[kBN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      pf[kk][0] = pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]);
      pf[kk][1] = pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]);
      pf[kk][2] = pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pf[kk][3] = pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
    }
    // O += P V: k step kk is keys 16 kk .. (two 8-row groups, 1024 bytes apart); N = 128 is
    // the two panels, kKVPanel apart.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
      wgmma_rs_tn(o, pf[kk], make_desc(v_base + kk * 16 * kRowBytes, kKVPanel, 1024));
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(o);
    mbar_arrive(&empty[stage]);
  }
  // The tiles past this warpgroup's last real row: turns taken and stages given back only.
  for (int t = n_wg; t < n_kv; ++t) {
    const int stage = t % kStages;
    mbar_wait(&full[stage], (t / kStages) & 1);
    asm volatile("bar.sync %0, 256;\n" ::"r"(my_turn) : "memory");
    if (!(wg == 1 && t == n_kv - 1)) asm volatile("bar.arrive %0, 256;\n" ::"r"(other_turn) : "memory");
    mbar_arrive(&empty[stage]);
  }

  // Normalise; stage this warpgroup's 64 rows in its own rows of sQ (its Q reads are complete:
  // every S product was waited for), then write whole 16-byte chunks of each real row.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float inv = row_inv_denominator(l_run[h]);
    const int r = wrow + warp * 16 + lane / 4 + 8 * h;
#pragma unroll
    for (int j = 0; j < 16; ++j)  // n8 block j is 16-byte chunk j of the row
      *reinterpret_cast<uint32_t*>(sQ + swz(r, j, kQPanel) + (lane % 4) * 4) =
          pack_bf16x2(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
  }
  asm volatile("bar.sync %0, 128;\n" ::"r"(3 + wg) : "memory");  // this warpgroup only
  const int64_t out_stride = int64_t{p.nh} * kD;
  for (int i = tid % 128; i < 64 * 16; i += 128) {
    const int r = wrow + i / 16, c = i % 16, pr = tl.r0 + r;
    if (pr >= tl.r_end) continue;
    bf16* dst = p.out + int64_t{tl.q_begin + pr / g} * out_stride + int64_t{kvh * g + pr % g} * kD + c * 8;
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sQ + swz(r, c, kQPanel));
  }
#else
  __trap();  // launched only where wgmma_available()
#endif
}

}  // namespace

bool wgmma_available() {
  static const bool available = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, prefill_wgmma_kernel) != cudaSuccess) {
      (void)cudaGetLastError();  // no image for this device: clear the sticky-free error
      return false;
    }
    return major == 9 && attr.binaryVersion == 90;  // sm_90a code, on a 9.x device
  }();
  return available;
}

void launch_wgmma_d128(const PrefillParams& p, int64_t T, cudaStream_t stream) {
  static const bool once = (allow_smem(prefill_wgmma_kernel, kSmemBytes), true);
  (void)once;
  detail::launch(prefill_wgmma_kernel, grid_size(p, T, kBM), kThreads, kSmemBytes, stream, p);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu::prefill
