// The selection passes of the sampler (sampler.cu), over one row per block: the row and its
// adjusted logits (Row), digit histograms, gathers into shared memory, the radix selection of a
// prefix of the key order by count or by mass, and the exponential race. Every function is
// called by all threads of the block (they hold barriers) with block-uniform arguments.
#pragma once

#include "kernels/cuda/sampler_device.cuh"

namespace nanovllm::gpu::sampler_detail {

using ull = unsigned long long;

struct Smem {
  ull* buf;          // (kCap,) gathered keys
  ull* mass;         // (kBins,) digit masses, or prefix masses of buf; pass 1: raw counts
  uint32_t* cnt;     // (kBins,) digit counts
  uint32_t* bitmap;  // (ceil(V / 32),) ids with a penalty or a ban
};

// One row: its logits, and the adjusted logit l (bans, penalties, then times 1/T unless greedy).
struct Row {
  const uint16_t* x;
  int V;
  bool greedy;
  float inv_t;
  bool has_ov;
  const uint32_t* bitmap;
  const uint32_t* ov;  // (n_ov, 2): id, bits of the penalised logit
  int n_ov;

  __device__ float scale(float l) const { return greedy ? l : __fmul_rn(l, inv_t); }
  // f(id, l) once for every id.
  template <typename F>
  __device__ void each_adjusted(F&& f) const {
    for_each_raw(x, V, [&](int i, float xi) {
      if (!(has_ov && ((bitmap[i >> 5] >> (i & 31)) & 1u))) f(i, scale(xi));
    });
    for (int e = threadIdx.x; e < n_ov; e += kThreads)
      f(static_cast<int>(__ldcg(ov + 2 * e)), scale(__uint_as_float(__ldcg(ov + 2 * e + 1))));
  }
};

// What the selections walk: the candidates (finite adjusted logits), or the raw logits.
struct AdjSrc {
  const Row* row;
  template <typename F>
  __device__ void each(F&& f) const {
    row->each_adjusted([&](int i, float v) {
      if (v != -CUDART_INF_F) f(i, v);
    });
  }
};
struct RawSrc {
  const uint16_t* x;
  int V;
  template <typename F>
  __device__ void each(F&& f) const { for_each_raw(x, V, f); }
};

// Histogram of the digit at `level` of the keys >= floor whose higher digits are `prefix`.
template <typename Src>
__device__ void hist_pass(const Src& src, const Smem& sm, int level, ull prefix, ull floor,
                          bool with_mass, float m) {
  const int shift = level_shift(level), nb = 1 << level_width(level), hi = shift + level_width(level);
  for (int b = threadIdx.x; b < nb; b += kThreads) sm.cnt[b] = 0, sm.mass[b] = 0;
  __syncthreads();
  src.each([&](int i, float v) {
    const ull k = make_key(v, i);
    if (k < floor || (k >> hi) != prefix) return;
    const int d = static_cast<int>((k >> shift) & static_cast<ull>(nb - 1));
    atomicAdd(sm.cnt + d, 1u);
    if (with_mass) {
      const ull w = mass_of(v, m);
      if (w) atomicAdd(sm.mass + d, w);
    }
  });
  __syncthreads();
}

// Gathers the keys that satisfy pred into sm.buf (at most kCap); returns how many. With
// total_mass, also sums the mass of every element of the source (in registers, then exactly).
template <typename Src, typename Pred>
__device__ int gather(const Src& src, const Smem& sm, Pred pred, float m = 0.f, ull* total_mass = nullptr) {
  __shared__ unsigned count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  ull mass = 0;
  src.each([&](int i, float v) {
    if (total_mass) mass += mass_of(v, m);
    const ull k = make_key(v, i);
    if (!pred(k)) return;
    const unsigned pos = atomicAdd(&count, 1u);
    if (pos < kCap) sm.buf[pos] = k;
  });
  if (total_mass) *total_mass = block_sum(mass);  // (its barriers also end the gather)
  __syncthreads();
  const int n = count < unsigned(kCap) ? int(count) : kCap;
  __syncthreads();
  return n;
}

// sm.mass[j] = mass of sm.buf[0 .. j] (inclusive) for j < n; returns the total.
__device__ ull prefix_masses(const Smem& sm, int n, float m) {
  const int first = threadIdx.x * kCapPerThread;
  ull local[kCapPerThread], s = 0;
#pragma unroll
  for (int j = 0; j < kCapPerThread; ++j) {
    const int i = first + j;
    s += i < n ? mass_of(key_value(sm.buf[i]), m) : 0ull;
    local[j] = s;
  }
  ull total;
  const ull before = block_exclusive_scan(s, total);
#pragma unroll
  for (int j = 0; j < kCapPerThread; ++j)
    if (first + j < n) sm.mass[first + j] = before + local[j];
  __syncthreads();
  return total;
}

// How many of sm.mass[0, n) are < target.
__device__ int count_below(const Smem& sm, int n, ull target) {
  int c = 0;
  for (int j = threadIdx.x; j < n; j += kThreads) c += sm.mass[j] < target;
  return block_sum(c);
}

struct Selected {
  ull key;    // the element where the walk in key order (descending) reaches the target
  ull count;  // elements >= key (among those >= floor)
  ull mass;   // their mass (when with_mass)
};

// Radix selection among the keys >= floor: by count (target-th element) or by mass (first
// element whose running mass reaches target). level0_ready: sm already holds the level-0
// histogram of exactly these keys.
template <typename Src>
__device__ Selected radix_select(const Src& src, const Smem& sm, float m, bool by_mass,
                                 bool with_mass, ull target, ull floor, bool level0_ready) {
  ull prefix = 0, above_c = 0, above_m = 0, pop = 0, pop_mass = 0;
  for (int level = 0; level < kLevels; ++level) {
    const int hi = level_shift(level) + level_width(level);
    if (level > 0 && pop <= ull(kCap)) {  // finish in shared memory
      const ull pre = prefix;
      const int n = gather(src, sm, [&](ull k) { return k >= floor && (k >> hi) == pre; });
      sort_desc(sm.buf, n);
      const ull need_c = target > above_c ? target - above_c : 0, need_m = target > above_m ? target - above_m : 0;
      ull in_mass = 0;
      if (with_mass) prefix_masses(sm, n, m);
      int j = by_mass ? count_below(sm, n, need_m) : static_cast<int>(need_c) - 1;
      j = j < 0 ? 0 : (j > n - 1 ? n - 1 : j);
      if (with_mass && n > 0) in_mass = sm.mass[j];
      const Selected s{n > 0 ? sm.buf[j] : floor, above_c + ull(j + 1), above_m + in_mass};
      __syncthreads();
      return s;
    }
    if (!(level == 0 && level0_ready)) hist_pass(src, sm, level, prefix, floor, with_mass, m);
    const ull need = by_mass ? (target > above_m ? target - above_m : 0) : (target > above_c ? target - above_c : 0);
    const BinPick p = find_bin(sm.cnt, with_mass ? sm.mass : nullptr, 1 << level_width(level), by_mass, need);
    if (p.bin < 0) return {floor, above_c, above_m};  // nothing >= floor: cannot happen
    above_c += p.above_cnt;
    above_m += p.above_mass;
    prefix = (prefix << level_width(level)) | ull(p.bin);
    pop = p.cnt;
    pop_mass = p.mass;
  }
  return {prefix, above_c + pop, above_m + pop_mass};  // all 50 bits fixed: one element
}

__device__ __forceinline__ void consider(RaceBest& best, float v, uint64_t noise, int id) {
  const RaceBest c{race_score(v, noise, id), id};
  if (better(c, best)) best = c;
}

// The exponential race over the candidates with key >= floor and p >= min_p * p_max.
__device__ int race_pass(const Row& row, ull floor, float m, float min_p, uint64_t noise, int fallback) {
  RaceBest best{-CUDART_INF, INT_MAX};
  AdjSrc{&row}.each([&](int i, float v) {
    if (floor && make_key(v, i) < floor) return;
    if (min_p > 0.f && rel_prob(v, m) < min_p) return;
    consider(best, v, noise, i);
  });
  best = block_reduce(best, CombineRace{});
  return best.id == INT_MAX ? fallback : best.id;
}

// The same over the first n keys of sm.buf.
__device__ int race_sorted(const Smem& sm, int n, float m, float min_p, uint64_t noise, int fallback) {
  RaceBest best{-CUDART_INF, INT_MAX};
  for (int j = threadIdx.x; j < n; j += kThreads) {
    const float v = key_value(sm.buf[j]);
    if (min_p > 0.f && rel_prob(v, m) < min_p) continue;
    consider(best, v, noise, key_id(sm.buf[j]));
  }
  best = block_reduce(best, CombineRace{});
  return best.id == INT_MAX ? fallback : best.id;
}

}  // namespace nanovllm::gpu::sampler_detail
