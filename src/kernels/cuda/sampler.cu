// The GPU sampler (sampler.h): one block of 512 threads per row, the row read from global
// memory (L2) in a few passes, never sorted whole.
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
//   greedy: 1 (log-sum-exp of the raw logits + argmax);  temperature alone: 1 (+ the race);
//   + min_p alone: 2;  top-k (with any top-p / min-p) whose candidates fit kCap: 2 (level-0
//   counts in pass 1, then gather, sort and finish in shared memory);  top-p alone: 2 when the
//   best <= kCap candidates hold the top-p set (gathered with the exact total mass), else a few
//   digit passes with mass histograms, then a race pass;  logprobs N > 0: +1 (gather the top-N
//   raw logits), more only when ties overflow kCap.
// Measured on an H200 (R = 256, V = 151936, 2 blocks per SM): greedy ~110 us (~700 GB/s of
// logits), top-k 50 + top-p 0.9 ~200 us, temperature alone ~380 us (the race hashes and logs
// every id), top-p 0.9 over sets larger than kCap ~1 ms (64-bit shared atomics of the mass
// histograms collide on the few bins the logits crowd into; warp-aggregating them was slower).
//
// Penalties and bans. The row's history and banned ids are deduplicated by a hash table in the
// workspace (atomicCAS on the id, atomic adds of the output counts), then compacted in place
// into a list of (id, penalised logit); a shared-memory bitmap marks those ids. Each pass reads
// the row skipping marked ids, then the list. Everything a decision depends on (max, argmax,
// integer counts and masses, keys, the race) is independent of the order of the work, so a row
// samples the same token wherever it sits in the batch.
#include <string>

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

struct Args {
  const uint16_t* logits;  // (R, V)
  int V, N;
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
  extern __shared__ ull smem[];
  const Smem sm{smem, smem + kCap, reinterpret_cast<uint32_t*>(smem + kCap + kBins),
                reinterpret_cast<uint32_t*>(smem + kCap + kBins) + kBins};
  const int r = blockIdx.x, V = a.V;
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

size_t sample_workspace_bytes(int64_t list_tokens) {
  return list_tokens > 0 ? static_cast<size_t>(list_tokens) * 16 : 0;
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
  require(!lists || workspace_bytes >= sample_workspace_bytes(list_tokens), op,
          "workspace_bytes " + std::to_string(workspace_bytes) + " < sample_workspace_bytes(" +
              std::to_string(list_tokens) + ")");
  require(!lists || list_tokens == 0 || (workspace && reinterpret_cast<uintptr_t>(workspace) % 16 == 0), op,
          "workspace must be non-null and 16-byte aligned");

  Args a{};
  a.logits = static_cast<const uint16_t*>(logits);
  a.V = static_cast<int>(V);
  a.N = max_logprobs;
  a.p = params;
  a.hist_off = history.offsets;
  a.hist_ids = history.ids;
  a.num_prompt = num_prompt_tokens;
  a.ban_off = banned.offsets;
  a.ban_ids = banned.ids;
  a.table = static_cast<uint32_t*>(workspace);
  a.table_slots = lists && workspace ? static_cast<int64_t>(workspace_bytes / 8) : 0;
  a.out = out;
  const size_t smem = smem_bytes(V);
  NANOVLLM_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  sample_kernel<<<static_cast<unsigned>(R), kThreads, smem, stream>>>(a);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
