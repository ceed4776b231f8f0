// The GPU sampler (sampler.h). Two kernels, queued back to back:
//   chunk_kernel: the split path, for the common rows (greedy, or temperature alone: no top-k
//     < V, top-p, min-p, penalty or ban list, and max_logprobs == 0). Each row is cut into
//     chunks of 8192 logits, one block of 512 threads per chunk (2 16-byte loads per thread),
//     so a row is read by ceil(V / 8192) SMs at once (19 for V = 151936) and a batch of R rows
//     by 19 R blocks over the whole GPU. A block reads its chunk once into registers and leaves
//     32 bytes: the raw argmax (greedy), the race winner (temperature), the raw log-sum-exp.
//   sample_kernel: one block per row. A split row's block combines its <= 32 partials in one
//     warp (fixed order) and writes token and logprob; every other row runs the one-block path
//     below from the start.
// Both kernels ask fast_row() with the same arguments, so they agree on which path a row takes.
// The split path reads each logit once (R V 2 bytes; ~18 us for R = 256 on an H200): greedy
// does ~7 operations per logit, well under the memory time. Temperature-only rows are bound by
// the race: scoring one logit in full (splitmix64, two logs, doubles) costs ~80 operations,
// which made that case compute bound. The split path scores in full only the logits that can
// still win: it first scores the largest logit of each group of 4 lanes (128 per chunk), takes
// their best score b, then tests every logit with the hash alone and a conservative bound
// (may_reach: score <= v - log(1 - u) + 5e-6 < b, checked with a 1e-3 margin); the ~10-30 that
// pass are scored in full by consecutive threads. The winner (max score, then lowest id) is
// therefore exactly the one-block path's, and so is the token, bit for bit, for any seed.
//
// The one-block path: one block of 512 threads per row, the row read from global memory (L2)
// in a few passes, never sorted whole.
//
// Keys. Every element gets a 50-bit key, (order-preserving bits of its float) << 18 | (2^18 - 1
// - id), so that "larger key" is exactly the CPU's order (higher value, then lower id) and keys
// are distinct. top-k, top-p and the raw top-N are all prefixes of that order, found by radix
// selection: a histogram of a 12-bit digit of the keys (counts, and for top-p the mass
// exp(l - max) in 2^-40 fixed point, whose integer sums are exact in any order), the bin where
// the running count or mass reaches the target, then the next digit inside that bin. As soon as
// the candidates left fit kCap (4096), they are gathered into shared memory, sorted (bitonic)
// and finished there.
//
// Passes over the row (V bf16 each, from L2 after the first), by the settings of the row:
//   greedy or temperature alone with logprobs or lists: 1 (+ the race);  + min_p alone: 2;
//   top-k (with any top-p / min-p) whose candidates fit kCap: 2 (level-0 counts in pass 1, then
//   gather, sort and finish in shared memory);  top-p alone: 2 when the best <= kCap
//   candidates hold the top-p set (gathered with the exact total mass), else a few digit
//   passes with mass histograms, then a race pass;  logprobs N > 0: +1 (gather the top-N raw
//   logits), more only when ties overflow kCap.
// Measured on an H200 before the split path (R = 256, V = 151936, 2 blocks per SM): greedy
// ~110 us, top-k 50 + top-p 0.9 ~200 us, temperature alone ~380 us, top-p 0.9 over sets larger
// than kCap ~1 ms (64-bit shared atomics of the mass histograms collide on the few bins the
// logits crowd into; warp-aggregating them was slower). The filtered rows still take this path.
//
// Penalties and bans. The row's history and banned ids are deduplicated by a hash table in the
// workspace (atomicCAS on the id, atomic adds of the output counts), then compacted in place
// into a list of (id, penalised logit); a shared-memory bitmap marks those ids. Each pass reads
// the row skipping marked ids, then the list. Everything a decision depends on (max, argmax,
// integer counts and masses, keys, the race) is independent of the order of the work, so a row
// samples the same token wherever it sits in the batch.
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/sampler.h"
#include "kernels/cuda/sampler_device.cuh"
#include "kernels/cuda/sampler_select.cuh"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using namespace sampler_detail;

constexpr uint32_t kEmpty = 0xFFFFFFFFu;
constexpr uint32_t kFlagHistory = 1u, kFlagBanned = 2u, kCountOne = 4u;  // payload: count << 2 | flags

// What one chunk of a split row leaves for the finishing block (32 bytes). Greedy rows fill
// best_*, temperature-only rows race_*; both fill the raw log-sum-exp.
struct Partial {
  double race_s;  // the chunk's race winner: score and id (INT_MAX: none)
  int race_id;
  int best_id;    // the chunk's raw argmax, lowest id on ties (INT_MAX: none)
  float best_v;
  float lse_mx, lse_s;  // raw logits: max and sum of exp(x - max)
  int unused;
};
static_assert(sizeof(Partial) == 32, "partials are 32 bytes");

// Rows are split into chunks of kChunk elements: kChunkVecs 16-byte vectors per thread.
constexpr int kChunkVecs = 2;
constexpr int kChunkVecsPerBlock = kThreads * kChunkVecs;
constexpr int kChunk = kChunkVecsPerBlock * 8;  // 8192
constexpr int kQueue = 1024;                    // race candidates a chunk can defer
constexpr int kGroup = 4;                       // lanes per first-guess candidate
constexpr int kGuesses = kThreads / kGroup;     // 128 first guesses per chunk
static_assert(kSamplerMaxVocab / kChunk <= 32, "a warp combines a row's chunks");

__host__ __device__ constexpr int num_chunks(int64_t V) { return static_cast<int>((V + kChunk - 1) / kChunk); }

struct Args {
  const uint16_t* logits;  // (R, V)
  int R, V, N;
  bool split;        // split the fast rows over chunks (else every row is one block's)
  Partial* parts;    // (R, num_chunks(V)) for the split rows
  SamplerParams p;
  const int32_t* hist_off;  // (R + 1,) or null
  const int32_t* hist_ids;
  const int32_t* num_prompt;  // (R,)
  const int32_t* ban_off;     // (R + 1,) or null
  const int32_t* ban_ids;
  uint32_t* table;  // (table_slots, 2) words: id, payload (then the penalised logit's bits)
  int64_t table_slots;
  SamplerResults out;
};

size_t smem_bytes(int64_t V) {
  return sizeof(ull) * (kCap + kBins) + sizeof(uint32_t) * (kBins + (V + 31) / 32);
}

__device__ int64_t table_insert(uint32_t* tab, int64_t cap, uint32_t id) {
  int64_t s = static_cast<int64_t>((uint64_t{id * 2654435761u} * static_cast<uint64_t>(cap)) >> 32);
  for (;;) {
    const uint32_t prev = atomicCAS(tab + 2 * s, kEmpty, id);
    if (prev == kEmpty || prev == id) return s;
    if (++s == cap) s = 0;
  }
}

// The CPU's order of operations, each rounded once (no contraction).
__device__ float penalised(float x, uint32_t pay, float rep, float pres, float freq) {
  float v = (pay & kFlagBanned) ? -CUDART_INF_F : x;
  if (rep != 1.f && (pay & kFlagHistory)) v = v > 0.f ? __fdiv_rn(v, rep) : __fmul_rn(v, rep);
  const uint32_t c = pay >> 2;
  if ((pres != 0.f || freq != 0.f) && c > 0)
    v = __fsub_rn(v, __fadd_rn(pres, __fmul_rn(freq, static_cast<float>(c))));
  return v;
}

// Builds the row's override list and bitmap. Uniform: every thread reads the same offsets.
__device__ void setup_overrides(const Args& a, int r, const Smem& sm, Row& row) {
  row.has_ov = false;
  row.n_ov = 0;
  int64_t h0 = 0, h1 = 0, b0 = 0, b1 = 0;
  if (a.hist_off) h0 = a.hist_off[r], h1 = a.hist_off[r + 1] > h0 ? a.hist_off[r + 1] : h0;
  if (a.ban_off) b0 = a.ban_off[r], b1 = a.ban_off[r + 1] > b0 ? a.ban_off[r + 1] : b0;
  const int64_t n = (h1 - h0) + (b1 - b0), cap = 2 * n, first = 2 * (h0 + b0);
  if (n == 0 || h0 < 0 || b0 < 0 || first + cap > a.table_slots) return;  // caller error: no lists
  uint32_t* tab = a.table + 2 * first;
  const int words = (row.V + 31) / 32;
  for (int w = threadIdx.x; w < words; w += kThreads) sm.bitmap[w] = 0;
  for (int64_t s = threadIdx.x; s < cap; s += kThreads) {
    __stcg(tab + 2 * s, kEmpty);
    __stcg(tab + 2 * s + 1, 0u);
  }
  __syncthreads();
  const int64_t np = a.num_prompt ? a.num_prompt[r] : 0;
  for (int64_t j = h0 + threadIdx.x; j < h1; j += kThreads) {
    const int32_t t = __ldg(a.hist_ids + j);
    if (t < 0 || t >= row.V) continue;
    const int64_t s = table_insert(tab, cap, static_cast<uint32_t>(t));
    atomicOr(tab + 2 * s + 1, kFlagHistory);
    if (j - h0 >= np) atomicAdd(tab + 2 * s + 1, kCountOne);
  }
  for (int64_t j = b0 + threadIdx.x; j < b1; j += kThreads) {
    const int32_t t = __ldg(a.ban_ids + j);
    if (t < 0 || t >= row.V) continue;
    atomicOr(tab + 2 * table_insert(tab, cap, static_cast<uint32_t>(t)) + 1, kFlagBanned);
  }
  __syncthreads();
  // Compact the occupied slots to the front, chunk by chunk: a slot is only written at an index
  // <= its own, after the whole chunk has been read (the scan's barrier).
  const float rep = a.p.repetition_penalty[r], pres = a.p.presence_penalty[r], freq = a.p.frequency_penalty[r];
  int64_t out = 0;
  for (int64_t c0 = 0; c0 < cap; c0 += kThreads) {
    const int64_t s = c0 + threadIdx.x;
    const uint32_t id = s < cap ? __ldcg(tab + 2 * s) : kEmpty;
    const uint32_t pay = s < cap ? __ldcg(tab + 2 * s + 1) : 0u;
    const bool occupied = id != kEmpty;
    const float v = occupied ? penalised(bf16_bits_to_float(__ldg(row.x + id)), pay, rep, pres, freq) : 0.f;
    ull total;
    const ull rank = block_exclusive_scan(occupied ? 1ull : 0ull, total);
    if (occupied) {
      const int64_t d = out + static_cast<int64_t>(rank);
      __stcg(tab + 2 * d, id);
      __stcg(tab + 2 * d + 1, __float_as_uint(v));
      atomicOr(sm.bitmap + (id >> 5), 1u << (id & 31));
    }
    out += static_cast<int64_t>(total);
  }
  __syncthreads();
  row.has_ov = true;
  row.ov = tab;
  row.n_ov = static_cast<int>(out);
}

// ---- The split path: greedy and temperature-only rows with no token lists and no logprobs.

struct FastRow {
  bool greedy;
  float inv_t;     // 1/T (sampled rows)
  uint64_t noise;  // the race's row base (sampled rows)
};

// Whether row r takes the split path. Both kernels ask, with the same answer: the rows the
// one-block path would sample in its first pass alone (no top-k < V, top-p, min-p, lists).
__device__ bool fast_row(const Args& a, int r, FastRow& f) {
  if (!a.split || a.N > 0) return false;
  if (a.hist_off && a.hist_off[r + 1] > a.hist_off[r]) return false;
  if (a.ban_off && a.ban_off[r + 1] > a.ban_off[r]) return false;
  const float temp = a.p.temperature[r];
  f = {temp <= 0.f, 1.f, 0};
  if (f.greedy) return true;
  const int k = a.p.top_k[r];
  if ((k > 0 && k < a.V) || a.p.top_p[r] < 1.f || a.p.min_p[r] > 0.f) return false;
  f.inv_t = __fdiv_rn(1.f, temp);
  f.noise = a.p.seed[r] ^ (a.p.step[r] * kGolden);
  return true;
}

// One chunk of a row: vectors [v0, v1) of the row's 16-byte-aligned body; chunk 0 also owns the
// unaligned head (< 8 elements) and tail (< 8). The split depends only on V and the row's
// address, never on the batch, and every thread visits its elements in increasing id order.
struct Chunk {
  const uint16_t* x;
  int V, head, tail, v0, v1;
  bool edges;
};
__device__ Chunk chunk_of(const uint16_t* x, int V, int c) {
  int head = static_cast<int>(((16u - (reinterpret_cast<uintptr_t>(x) & 15u)) & 15u) >> 1);
  if (head > V) head = V;
  const int nvec = (V - head) >> 3;
  const int v0 = c * kChunkVecsPerBlock;
  const int v1 = nvec < v0 + kChunkVecsPerBlock ? nvec : v0 + kChunkVecsPerBlock;
  return {x, V, head, head + nvec * 8, v0, v1, c == 0};
}

// The chunk's vectors, held in registers: read from memory once, walked several times.
struct Held {
  uint4 pk[kChunkVecs];
};
__device__ __forceinline__ void load(const Chunk& ch, Held& h) {
  const uint4* xv = reinterpret_cast<const uint4*>(ch.x + ch.head);
#pragma unroll
  for (int j = 0; j < kChunkVecs; ++j) {
    const int vi = ch.v0 + j * kThreads + static_cast<int>(threadIdx.x);
    h.pk[j] = vi < ch.v1 ? __ldcs(xv + vi) : make_uint4(0, 0, 0, 0);  // read once: stream it
  }
}
// f(id, raw logit) for this thread's elements, ids increasing.
template <typename F>
__device__ __forceinline__ void each_held(const Chunk& ch, const Held& h, F&& f) {
  const int t = static_cast<int>(threadIdx.x);
  if (ch.edges && t < ch.head) f(t, bf16_bits_to_float(__ldg(ch.x + t)));
#pragma unroll
  for (int j = 0; j < kChunkVecs; ++j) {
    const int vi = ch.v0 + j * kThreads + t;
    if (vi >= ch.v1) continue;
    const int base = ch.head + vi * 8;
    const uint32_t w[4] = {h.pk[j].x, h.pk[j].y, h.pk[j].z, h.pk[j].w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      f(base + 2 * q, __uint_as_float(w[q] << 16));
      f(base + 2 * q + 1, __uint_as_float(w[q] & 0xFFFF0000u));
    }
  }
  if (ch.edges && ch.tail + t < ch.V) f(ch.tail + t, bf16_bits_to_float(__ldg(ch.x + ch.tail + t)));
}

// The race filter. Whether element (v, id) can score >= b, where b_lo <= b: false only when
// its race score (race_score, as computed, roundings included) is certainly < b.
// Why it holds: with q = 1 - u, E = -log u >= q, and the float pipeline of log_noise loses at
// most ~5e-6, so score <= v - log q + 5e-6. The top 32 noise bits m give q >= ~m * 2^-32
// (u <= (m53 + 1) / 2^53 for the 53-bit m53), truncated further to 23 bits so that it is one
// float OR; q = 0 (u rounded to 1, score +inf) gives 0 and always passes. The threshold
// exp(v - b) gets a 1e-3 relative margin, far above the error of ex2.approx and of v - b_lo.
// An element passes with probability ~exp(v - b): only near-winners do.
__device__ __forceinline__ bool may_reach(float v, uint64_t noise, int id, float b_lo) {
  const uint32_t not_hi = ~static_cast<uint32_t>(noise_bits(noise, static_cast<uint64_t>(id)) >> 32);
  const float q_lo = __uint_as_float(0x3F800000u | (not_hi >> 9)) - 1.f;
  constexpr float kLog2e = 1.4426950408889634f, kLog2Margin = 1.4419741739e-3f;  // log2(1.001)
  const float th = ex2_approx(fmaf(v - b_lo, kLog2e, kLog2Margin));
  return !(q_lo > th);
}

// A first lower bound on the chunk's race winner: the exact score of the largest logit of each
// group of kGroup lanes (kGuesses of them, scored by kGuesses threads only, so that only
// kGuesses / 32 warps pay for the full-precision noise).
__device__ RaceBest first_guess(const ArgMax& mine, const FastRow& f) {
  __shared__ uint2 guess[kGuesses];
  ArgMax g = mine;
#pragma unroll
  for (int o = 1; o < kGroup; o <<= 1) {
    const ArgMax other = shfl_xor(g, o);
    if (better(other, g)) g = other;
  }
  if (threadIdx.x % kGroup == 0) guess[threadIdx.x / kGroup] = make_uint2(static_cast<uint32_t>(g.id), __float_as_uint(g.v));
  __syncthreads();
  RaceBest c{-CUDART_INF, INT_MAX};
  if (threadIdx.x < kGuesses) {
    const uint2 e = guess[threadIdx.x];
    const float v = __fmul_rn(__uint_as_float(e.y), f.inv_t);
    if (e.x != static_cast<uint32_t>(INT_MAX) && v > -CUDART_INF_F) consider(c, v, f.noise, static_cast<int>(e.x));
  }
  return block_reduce(c, CombineRace{});  // (its barriers also retire `guess`)
}

// The chunk's race winner: exactly the best (score, then lowest id) of its candidates. Every
// element that can reach the first guess b is deferred to a shared queue and scored there by
// consecutive threads (few elements pass, and they would stall whole warps if scored in
// place); if the queue overflows, every thread scores its own passing elements instead.
__device__ RaceBest chunk_race(const Chunk& ch, const Held& h, const ArgMax& mine, const FastRow& f) {
  __shared__ uint2 queue[kQueue];
  __shared__ unsigned queued;
  if (threadIdx.x == 0) queued = 0;
  const RaceBest b = first_guess(mine, f);  // (its barriers publish `queued`)
  // The bound's margin (1e-3) covers the double rounding of scores only while they are below
  // ~1e12 (x / T of real logits is far below); past it, or with no finite guess, every
  // candidate passes and is scored in full.
  const float b_lo = fabs(b.s) < 1e12 ? __double2float_rd(b.s) : -CUDART_INF_F;
  auto passes = [&](int i, float v) { return v > -CUDART_INF_F && may_reach(v, f.noise, i, b_lo); };
  each_held(ch, h, [&](int i, float x) {
    const float v = __fmul_rn(x, f.inv_t);
    if (!passes(i, v)) return;
    const unsigned pos = atomicAdd(&queued, 1u);
    if (pos < kQueue) queue[pos] = make_uint2(static_cast<uint32_t>(i), __float_as_uint(v));
  });
  __syncthreads();
  const unsigned n = queued;
  RaceBest best = b;
  if (n <= kQueue) {
    for (unsigned k = threadIdx.x; k < n; k += kThreads) {
      const uint2 e = queue[k];
      consider(best, __uint_as_float(e.y), f.noise, static_cast<int>(e.x));
    }
  } else {
    each_held(ch, h, [&](int i, float x) {
      const float v = __fmul_rn(x, f.inv_t);
      if (passes(i, v)) consider(best, v, f.noise, i);
    });
  }
  return block_reduce(best, CombineRace{});  // (its barriers retire `queue` and `queued`)
}

// Chunk c of row r: one read of its logits into registers, then the raw argmax, the raw
// log-sum-exp and (sampled rows) the race, all from registers.
__device__ void chunk_pass(const Args& a, int r, int c, const FastRow& f, Partial* out) {
  const Chunk ch = chunk_of(a.logits + int64_t{r} * a.V, a.V, c);
  Held h;
  load(ch, h);
  // The raw argmax: ids increase, so a strict > keeps the lowest id of a tie. An -inf
  // element is the argmax only when nothing is larger: look for the first one then.
  ArgMax mine{-CUDART_INF_F, INT_MAX};
  each_held(ch, h, [&](int i, float x) {
    if (x > mine.v) mine = {x, i};
  });
  if (mine.id == INT_MAX)
    each_held(ch, h, [&](int i, float x) {
      if (x == -CUDART_INF_F && i < mine.id) mine.id = i;
    });
  // The raw log-sum-exp around this thread's max (logprobs need 1e-3, not bits).
  Lse lse{mine.v, 0.f};
  if (mine.v > -CUDART_INF_F) {
    const float mx = mine.v;
    each_held(ch, h, [&](int, float x) { lse.s += ex2_approx(__fsub_rn(x, mx) * 1.4426950408889634f); });
  }
  Partial p{};
  p.race_s = -CUDART_INF;
  p.race_id = INT_MAX;
  p.best_v = -CUDART_INF_F;
  p.best_id = INT_MAX;
  if (f.greedy) {
    const ArgMax best = block_reduce(mine, CombineArgMax{});
    p.best_v = best.v;
    p.best_id = best.id;
  } else {
    const RaceBest race = chunk_race(ch, h, mine, f);
    p.race_s = race.s;
    p.race_id = race.id;
  }
  lse = block_reduce(lse, CombineLse{});
  p.lse_mx = lse.mx;
  p.lse_s = lse.s;
  if (threadIdx.x == 0) *out = p;
}

// Pass 1 of the split rows: block (c, y) takes chunk c of rows y, y + gridDim.y, ...; the
// other rows' blocks return at once.
__global__ void __launch_bounds__(kThreads, 3) chunk_kernel(Args a) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  const int c = blockIdx.x, nch = gridDim.x;
  for (int r = blockIdx.y; r < a.R; r += gridDim.y) {
    FastRow f;
    if (!fast_row(a, r, f)) continue;  // block-uniform
    chunk_pass(a, r, c, f, a.parts + int64_t{r} * nch + c);
  }
}

// Pass 2 of a split row, by warp 0 of its block: the chunks' partials combined in a fixed
// order (so the logprob is reproducible), the token as the one-block path picks it.
__device__ void finish_split_row(const Args& a, int r, const FastRow& f) {
  const int nch = num_chunks(a.V), lane = static_cast<int>(threadIdx.x);
  Lse lse{-CUDART_INF_F, 0.f};
  ArgMax best{-CUDART_INF_F, INT_MAX};
  RaceBest race{-CUDART_INF, INT_MAX};
  for (int c = lane; c < nch; c += 32) {
    const Partial p = a.parts[int64_t{r} * nch + c];
    lse = CombineLse{}(lse, Lse{p.lse_mx, p.lse_s});
    best = CombineArgMax{}(best, ArgMax{p.best_v, p.best_id});
    race = CombineRace{}(race, RaceBest{p.race_s, p.race_id});
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    lse = CombineLse{}(lse, shfl_xor(lse, o));
    best = CombineArgMax{}(best, shfl_xor(best, o));
    race = CombineRace{}(race, shfl_xor(race, o));
  }
  if (lane != 0) return;
  // Sampled: the race winner; none only when every l is -inf or NaN (the one-block path's
  // "everything banned": 0).
  int token = f.greedy ? best.id : (race.id != INT_MAX ? race.id : 0);
  if (token < 0 || token >= a.V) token = 0;  // only NaN logits get here
  const float log_z = lse.mx + logf(lse.s);
  a.out.token[r] = token;
  a.out.logprob[r] = bf16_bits_to_float(a.logits[int64_t{r} * a.V + token]) - log_z;
}

// top-k, then top-p, then min-p, then the race (rows with at least one filter on). sm.cnt holds
// the level-0 counts of the candidates when top-k or top-p is on.
__device__ int sample_filtered(const Row& row, const Smem& sm, float m, int finite, int top_k, bool k_on,
                               float top_p, bool p_on, float min_p, uint64_t noise,
                               const BinPick& kpick, int argmax) {
  const AdjSrc adj{&row};
  if (k_on && kpick.bin >= 0 && kpick.above_cnt + kpick.cnt <= ull(kCap)) {
    // Every candidate is in a level-0 bin >= kpick.bin: gather them, finish in shared memory.
    const int n = gather(adj, sm, [&](ull k) { return key_digit0(k) >= kpick.bin; });
    sort_desc(sm.buf, n);
    int keep = top_k < n ? top_k : n;
    if (p_on) {
      const ull kept_mass = prefix_masses(sm, keep, m);
      const int below = count_below(sm, keep, mass_target(top_p, kept_mass));
      keep = below + 1 < keep ? below + 1 : keep;
    }
    return race_sorted(sm, keep, m, min_p, noise, argmax);
  }
  ull total_mass = 0;
  if (p_on && !k_on) {
    // Speculate that the top-p set is small (it usually is): gather the best <= kCap candidates
    // (whole level-0 bins) and the exact total mass in one pass, with no mass histogram.
    const BinPick b = find_bin(sm.cnt, nullptr, kBins, false, ull(kCap) + 1);
    const int lowest = finite <= kCap ? 0 : b.bin + 1;
    const int n = gather(adj, sm, [&](ull k) { return key_digit0(k) >= lowest; }, m, &total_mass);
    sort_desc(sm.buf, n);
    prefix_masses(sm, n, m);
    const int below = count_below(sm, n, mass_target(top_p, total_mass));
    if (below < n) return race_sorted(sm, below + 1, m, min_p, noise, argmax);
  }
  // Large sets: exact radix selection over the row, then a race pass.
  ull floor = 0;
  if (k_on) {
    const Selected s = radix_select(adj, sm, m, false, p_on, ull(top_k), 0, !p_on);
    floor = s.key;
    total_mass = s.mass;
  }
  if (p_on) floor = radix_select(adj, sm, m, true, true, mass_target(top_p, total_mass), floor, false).key;
  return race_pass(row, floor, m, min_p, noise, argmax);
}

__global__ void __launch_bounds__(kThreads, 2) sample_kernel(Args a) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  extern __shared__ ull smem[];
  const Smem sm{smem, smem + kCap, reinterpret_cast<uint32_t*>(smem + kCap + kBins),
                reinterpret_cast<uint32_t*>(smem + kCap + kBins) + kBins};
  const int r = blockIdx.x, V = a.V;
  {
    FastRow f;
    if (fast_row(a, r, f)) {  // block-uniform: pass 1 was chunk_kernel's
      if (threadIdx.x < 32) finish_split_row(a, r, f);
      return;
    }
  }
  const float temp = a.p.temperature[r];
  Row row{a.logits + int64_t{r} * V, V, temp <= 0.f, 1.f, false, sm.bitmap, nullptr, 0};
  if (!row.greedy) row.inv_t = __fdiv_rn(1.f, temp);
  setup_overrides(a, r, sm, row);
  const int top_k = a.p.top_k[r];
  const float top_p = a.p.top_p[r], min_p = a.p.min_p[r];
  const uint64_t noise = a.p.seed[r] ^ (a.p.step[r] * kGolden);
  const bool k_maybe = !row.greedy && top_k > 0 && top_k < V;
  const bool p_on = !row.greedy && top_p < 1.f, mp_on = !row.greedy && min_p > 0.f;
  const bool khist = k_maybe || p_on;  // level-0 counts of the candidates
  const bool race1 = !row.greedy && !k_maybe && !p_on && !mp_on;
  const int n_top = a.N < V ? a.N : V;
  uint32_t* raw_cnt = reinterpret_cast<uint32_t*>(sm.mass);  // pass 1 only

  // Pass 1: raw log-sum-exp (+ raw level-0 counts for the top-N), argmax of l, finite count
  // (+ level-0 counts for top-k), and for temperature-only rows the race itself.
  for (int b = threadIdx.x; b < kBins; b += kThreads) {
    if (khist) sm.cnt[b] = 0;
    if (n_top > 0) raw_cnt[b] = 0;
  }
  __syncthreads();
  Lse lse{-CUDART_INF_F, 0.f};
  ArgMax best{-CUDART_INF_F, INT_MAX};
  RaceBest race{-CUDART_INF, INT_MAX};
  int finite = 0;
  auto adjusted = [&](int i, float v) {
    if (better(ArgMax{v, i}, best)) best = {v, i};
    if (row.greedy || v == -CUDART_INF_F) return;
    ++finite;
    if (khist) atomicAdd(sm.cnt + (ord_of(v) >> 20), 1u);
    if (race1) consider(race, v, noise, i);
  };
  for_each_raw(row.x, V, [&](int i, float xi) {
    lse_add(lse, xi);
    if (n_top > 0) atomicAdd(raw_cnt + (ord_of(xi) >> 20), 1u);
    if (!(row.has_ov && ((sm.bitmap[i >> 5] >> (i & 31)) & 1u))) adjusted(i, row.scale(xi));
  });
  for (int e = threadIdx.x; e < row.n_ov; e += kThreads)
    adjusted(static_cast<int>(__ldcg(row.ov + 2 * e)), row.scale(__uint_as_float(__ldcg(row.ov + 2 * e + 1))));
  lse = block_reduce(lse, CombineLse{});
  best = block_reduce(best, CombineArgMax{});
  finite = block_sum(finite);
  if (race1) race = block_reduce(race, CombineRace{});
  const float log_z = lse.mx + logf(lse.s);
  const BinPick kpick = k_maybe ? find_bin(sm.cnt, nullptr, kBins, false, ull(top_k)) : BinPick{-1, 0, 0, 0, 0};
  const BinPick rpick = n_top > 0 ? find_bin(raw_cnt, nullptr, kBins, false, ull(n_top)) : BinPick{-1, 0, 0, 0, 0};

  int token;
  if (row.greedy) {
    token = best.id;
  } else if (best.v == -CUDART_INF_F) {
    token = 0;  // everything banned: as the CPU
  } else if (race1) {
    token = race.id == INT_MAX ? best.id : race.id;
  } else {
    const bool k_on = top_k > 0 && top_k < finite;
    if (!k_on && !p_on && !mp_on)
      token = race_pass(row, 0, best.v, 0.f, noise, best.id);
    else
      token = sample_filtered(row, sm, best.v, finite, top_k, k_on, top_p, p_on, mp_on ? min_p : 0.f, noise, kpick, best.id);
  }
  if (token < 0 || token >= V) token = 0;  // only NaN logits get here
  if (threadIdx.x == 0) {
    a.out.token[r] = token;
    a.out.logprob[r] = bf16_bits_to_float(row.x[token]) - log_z;
  }

  // The top-N of the raw logits.
  if (a.N > 0) {
    const RawSrc raw{row.x, V};
    int n;
    if (rpick.bin >= 0 && rpick.above_cnt + rpick.cnt <= ull(kCap)) {
      n = gather(raw, sm, [&](ull k) { return key_digit0(k) >= rpick.bin; });
    } else {
      const ull kth = radix_select(raw, sm, 0.f, false, false, ull(n_top), 0, false).key;
      n = gather(raw, sm, [&](ull k) { return k >= kth; });
    }
    sort_desc(sm.buf, n);
    for (int j = threadIdx.x; j < a.N; j += kThreads) {
      const bool ok = j < n_top && j < n;
      a.out.top_ids[int64_t{r} * a.N + j] = ok ? key_id(sm.buf[j]) : -1;
      a.out.top_logprobs[int64_t{r} * a.N + j] = ok ? key_value(sm.buf[j]) - log_z : -CUDART_INF_F;
    }
  }
}

}  // namespace

size_t sample_workspace_bytes(int64_t R, int64_t V, int64_t list_tokens) {
  const int64_t parts = R > 0 && V > 0 ? R * num_chunks(V < kSamplerMaxVocab ? V : kSamplerMaxVocab) : 0;
  return static_cast<size_t>(parts) * sizeof(Partial) + (list_tokens > 0 ? static_cast<size_t>(list_tokens) * 16 : 0);
}

void sample(const void* logits, int64_t R, int64_t V, const SamplerParams& params,
            const SamplerTokenLists& history, const int32_t* num_prompt_tokens,
            const SamplerTokenLists& banned, int64_t list_tokens, int max_logprobs,
            void* workspace, size_t workspace_bytes, const SamplerResults& out,
            cudaStream_t stream) {
  const char* op = "sample";
  using detail::require;
  require(R >= 0 && R <= INT32_MAX, op, "R must be in [0, 2^31), got " + std::to_string(R));
  require(V >= 1 && V <= kSamplerMaxVocab, op,
          "V must be in [1, " + std::to_string(kSamplerMaxVocab) + "], got " + std::to_string(V));
  require(max_logprobs >= 0 && max_logprobs <= kSamplerMaxLogprobs, op,
          "max_logprobs must be in [0, " + std::to_string(kSamplerMaxLogprobs) + "], got " +
              std::to_string(max_logprobs));
  require(list_tokens >= 0 && list_tokens <= INT32_MAX, op,
          "list_tokens must be in [0, 2^31), got " + std::to_string(list_tokens));
  if (R == 0) return;
  require(logits != nullptr, op, "logits is null");
  require(reinterpret_cast<uintptr_t>(logits) % 2 == 0, op, "logits must be 2-byte aligned");
  require(params.temperature && params.top_k && params.top_p && params.min_p &&
              params.repetition_penalty && params.presence_penalty && params.frequency_penalty &&
              params.seed && params.step,
          op, "a params array is null");
  require(!history.offsets || (history.ids && num_prompt_tokens), op,
          "history has offsets but null ids or num_prompt_tokens");
  require(!banned.offsets || banned.ids, op, "banned has offsets but null ids");
  require(out.token && out.logprob, op, "out.token or out.logprob is null");
  require(max_logprobs == 0 || (out.top_ids && out.top_logprobs), op,
          "out.top_ids / out.top_logprobs are null with max_logprobs > 0");
  const bool lists = history.offsets || banned.offsets;
  const size_t need = sample_workspace_bytes(R, V, lists ? list_tokens : 0);
  require(workspace_bytes >= need, op,
          "workspace_bytes " + std::to_string(workspace_bytes) + " < sample_workspace_bytes(" + std::to_string(R) +
              ", " + std::to_string(V) + ", " + std::to_string(lists ? list_tokens : 0) + ") = " + std::to_string(need));
  require(workspace && reinterpret_cast<uintptr_t>(workspace) % 16 == 0, op,
          "workspace must be non-null and 16-byte aligned");

  Args a{};
  a.logits = static_cast<const uint16_t*>(logits);
  a.R = static_cast<int>(R);
  a.V = static_cast<int>(V);
  a.N = max_logprobs;
  a.split = params.split_rows && max_logprobs == 0;
  const int nch = num_chunks(V);
  const size_t part_bytes = static_cast<size_t>(R) * static_cast<size_t>(nch) * sizeof(Partial);
  a.parts = static_cast<Partial*>(workspace);
  a.p = params;
  a.hist_off = history.offsets;
  a.hist_ids = history.ids;
  a.num_prompt = num_prompt_tokens;
  a.ban_off = banned.offsets;
  a.ban_ids = banned.ids;
  a.table = reinterpret_cast<uint32_t*>(static_cast<char*>(workspace) + part_bytes);
  a.table_slots = lists ? static_cast<int64_t>((workspace_bytes - part_bytes) / 8) : 0;
  a.out = out;
  const size_t smem = smem_bytes(V);
  NANOVLLM_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  if (a.split) {
    const dim3 grid(static_cast<unsigned>(nch), static_cast<unsigned>(R < 65535 ? R : 65535));
    detail::launch(chunk_kernel, grid, kThreads, 0, stream, a);
    NANOVLLM_CUDA_CHECK_LAUNCH();
  }
  detail::launch(sample_kernel, static_cast<unsigned>(R), kThreads, smem, stream, a);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
