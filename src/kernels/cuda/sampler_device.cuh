// Device building blocks of the sampler (sampler.cu): order-preserving keys, the counter-based
// noise (its raw bits too, for the split path's race filter), the walk over a bf16 row, block
// reductions and scans, a bitonic sort of up to kCap keys, and the digit-bin search of the radix
// selection. Blocks of kThreads, per row (one-block path) or per chunk of a row (split path).
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <climits>
#include <cstdint>

namespace nanovllm::gpu::sampler_detail {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kIdBits = 18;  // token ids < 2^18 (kSamplerMaxVocab)
constexpr uint32_t kIdMask = (1u << kIdBits) - 1;
constexpr int kBins = 4096;  // a 12-bit radix digit
constexpr int kCap = 4096;   // keys a block gathers and sorts in shared memory
constexpr int kLevels = 5;   // digits of a 50-bit key: 12, 12, 12, 12, 2 bits
constexpr int kBinsPerThread = kBins / kThreads;
constexpr int kCapPerThread = kCap / kThreads;
static_assert(kBins % kThreads == 0 && kCap % kThreads == 0, "bins and capacity per thread");

__device__ __forceinline__ int level_shift(int level) { return level < 4 ? 38 - 12 * level : 0; }
__device__ __forceinline__ int level_width(int level) { return level < 4 ? 12 : 2; }

// ---- Keys: a float's order as an unsigned int (-0 and +0 equal, as float compares), then the
// 50-bit key (value << 18 | (kIdMask - id)): larger key = larger value, then lower id. Every
// key of a real element is > 0, so 0 pads a sort.
__device__ __forceinline__ uint32_t ord_of(float f) {
  const uint32_t b = __float_as_uint(f == 0.f ? 0.f : f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_ord(uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o);
}
__device__ __forceinline__ uint64_t make_key(float v, int id) {
  return (uint64_t{ord_of(v)} << kIdBits) | uint64_t{kIdMask - static_cast<uint32_t>(id)};
}
__device__ __forceinline__ float key_value(uint64_t k) { return from_ord(static_cast<uint32_t>(k >> kIdBits)); }
__device__ __forceinline__ int key_id(uint64_t k) { return static_cast<int>(kIdMask - static_cast<uint32_t>(k & kIdMask)); }
__device__ __forceinline__ int key_digit0(uint64_t k) { return static_cast<int>(k >> 38); }

// ---- Probability mass in fixed point: w = exp(v - m) <= 1 times 2^40. Integer sums are exact
// and associative, so every cumulative sum is the same whatever the order of the additions
// (and sums of 2^18 elements stay below 2^58). Weights under 2^-41 count as 0.
__device__ __forceinline__ float rel_prob(float v, float m) { return expf(__fsub_rn(v, m)); }
__device__ __forceinline__ uint64_t mass_of(float v, float m) {
  return __float2ull_rn(rel_prob(v, m) * 1099511627776.f);
}
// The integer form of "cum < top_p * base": cum < ceil(top_p * base).
__device__ __forceinline__ uint64_t mass_target(float top_p, uint64_t base) {
  const double t = static_cast<double>(top_p) * static_cast<double>(base);
  return t > 0 ? static_cast<uint64_t>(ceil(t)) : 0;
}

// ---- The noise of runtime/sampling.h, bit for bit: u(seed, step, i) with
// row_base = seed ^ (step * golden). Returns log E, E = -log u, in float: the race compares
// v - log E (log of p / E up to the row's constant), in double.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
// The 64 random bits behind u (splitmix64 of the counter); u = ((bits >> 11) + 0.5) / 2^53.
__device__ __forceinline__ uint64_t noise_bits(uint64_t row_base, uint64_t index) {
  uint64_t z = row_base ^ (index * 0xC2B2AE3D27D4EB4Full);
  z += kGolden;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ double uniform(uint64_t row_base, uint64_t index) {
  return (static_cast<double>(noise_bits(row_base, index) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
__device__ __forceinline__ float log_noise(uint64_t row_base, int index) {
  const double u = uniform(row_base, static_cast<uint64_t>(index));
  // Near u = 1, -log u ~ 1 - u: take it from the exact 1 - u, not from u rounded to float.
  const float e = u < 0.5 ? -logf(static_cast<float>(u)) : -log1pf(static_cast<float>(u - 1.0));
  return logf(e);
}
__device__ __forceinline__ double race_score(float v, uint64_t row_base, int id) {
  return static_cast<double>(v) - static_cast<double>(log_noise(row_base, id));
}

// 2^x by the hardware approximation (relative error ~2^-22; results under 2^-126 flush to 0).
// Only for the log-sum-exp behind logprobs and for the conservative race filter below, never for
// a decision that must match the CPU bit for bit.
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// ---- Reductions. Each returns the block's result to every thread; ties go to the lower id,
// so results never depend on which thread saw which element.
struct ArgMax {
  float v;
  int id;
};
struct RaceBest {
  double s;
  int id;
};
struct Lse {  // online log-sum-exp: s = sum exp(x - mx)
  float mx, s;
};

__device__ __forceinline__ bool better(const ArgMax& a, const ArgMax& b) {
  return a.v > b.v || (a.v == b.v && a.id < b.id);
}
__device__ __forceinline__ bool better(const RaceBest& a, const RaceBest& b) {
  return a.s > b.s || (a.s == b.s && a.id < b.id);
}
__device__ __forceinline__ void lse_add(Lse& a, float x) {
  if (x == -CUDART_INF_F) return;
  if (x > a.mx) {
    a.s = a.s * expf(a.mx - x) + 1.f;
    a.mx = x;
  } else {
    a.s += expf(x - a.mx);
  }
}

struct CombineArgMax {
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const { return better(b, a) ? b : a; }
};
struct CombineRace {
  __device__ RaceBest operator()(const RaceBest& a, const RaceBest& b) const { return better(b, a) ? b : a; }
};
struct CombineLse {
  __device__ Lse operator()(const Lse& a, const Lse& b) const {
    const float mx = fmaxf(a.mx, b.mx);
    if (mx == -CUDART_INF_F) return {mx, 0.f};
    const float sa = a.mx == -CUDART_INF_F ? 0.f : a.s * expf(a.mx - mx);
    const float sb = b.mx == -CUDART_INF_F ? 0.f : b.s * expf(b.mx - mx);
    return {mx, sa + sb};
  }
};
struct CombineSum {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct CombineMin {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct CombineMax {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};

__device__ __forceinline__ ArgMax shfl_xor(const ArgMax& a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.id, o)};
}
__device__ __forceinline__ RaceBest shfl_xor(const RaceBest& a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.s, o), __shfl_xor_sync(0xffffffffu, a.id, o)};
}
__device__ __forceinline__ Lse shfl_xor(const Lse& a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.mx, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
}
__device__ __forceinline__ int shfl_xor(int a, int o) { return __shfl_xor_sync(0xffffffffu, a, o); }
__device__ __forceinline__ unsigned long long shfl_xor(unsigned long long a, int o) {
  return __shfl_xor_sync(0xffffffffu, a, o);
}

// Every thread must call it (it has barriers); the warps' partials are combined in a fixed
// order, so float results are reproducible.
template <typename T, typename Combine>
__device__ T block_reduce(T v, Combine combine) {
  __shared__ T partial[kWarps];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, shfl_xor(v, o));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = partial[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = combine(r, partial[w]);
  __syncthreads();  // `partial` may be written again by the next call
  return r;
}
__device__ __forceinline__ unsigned long long block_sum(unsigned long long v) {
  return block_reduce(v, CombineSum{});
}
__device__ __forceinline__ int block_sum(int v) { return block_reduce(v, CombineSum{}); }

// Exclusive prefix sum over the threads in index order; `total` gets the block's sum.
__device__ __forceinline__ unsigned long long block_exclusive_scan(unsigned long long v,
                                                                   unsigned long long& total) {
  __shared__ unsigned long long warp_total[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long up = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += up;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  unsigned long long before = 0, sum = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const unsigned long long t = warp_total[w];
    if (w < warp) before += t;
    sum += t;
  }
  __syncthreads();
  total = sum;
  return before + incl - v;
}

// ---- A row of V bf16 at x (2-byte aligned): f(i, value) once for every i, in 16-byte loads
// (four in flight per thread) between an element-wise head and tail.
__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }

template <typename F>
__device__ __forceinline__ void for_each_raw(const uint16_t* __restrict__ x, int V, F&& f) {
  int head = static_cast<int>(((16u - (reinterpret_cast<uintptr_t>(x) & 15u)) & 15u) >> 1);
  if (head > V) head = V;
  for (int i = threadIdx.x; i < head; i += kThreads) f(i, bf16_bits_to_float(__ldg(x + i)));
  const int nvec = (V - head) >> 3;
  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
  constexpr int kUnroll = 4;
  for (int c0 = threadIdx.x; c0 < nvec; c0 += kThreads * kUnroll) {
    uint4 pk[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * kThreads;
      if (c < nvec) pk[u] = __ldg(xv + c);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * kThreads;
      if (c >= nvec) continue;
      const int base = head + c * 8;
      const uint32_t w[4] = {pk[u].x, pk[u].y, pk[u].z, pk[u].w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        f(base + 2 * j, __uint_as_float(w[j] << 16));
        f(base + 2 * j + 1, __uint_as_float(w[j] & 0xFFFF0000u));
      }
    }
  }
  for (int i = head + nvec * 8 + threadIdx.x; i < V; i += kThreads) f(i, bf16_bits_to_float(__ldg(x + i)));
}

// ---- Bitonic sort of a[0, n) into descending order, n <= kCap; pads a[n, pow2) with 0. The
// caller has synchronised after writing a; the sort ends synchronised.
__device__ __forceinline__ void sort_desc(unsigned long long* a, int n) {
  int p = 1;
  while (p < n) p <<= 1;
  for (int i = n + threadIdx.x; i < p; i += kThreads) a[i] = 0;
  __syncthreads();
  for (int k = 2; k <= p; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < p; i += kThreads) {
        const int l = i ^ j;
        if (l > i) {
          const unsigned long long u = a[i], w = a[l];
          if ((i & k) == 0 ? u < w : u > w) {
            a[i] = w;
            a[l] = u;
          }
        }
      }
      __syncthreads();
    }
}

// ---- The digit bin where a walk from the highest bin down reaches `target` (the running
// count, or the running mass when by_mass): the first nonempty bin whose inclusive running
// value is >= target. If none does (a target past the total), the lowest nonempty bin; bin -1
// if every bin is empty. above_* are the sums over the bins above it. mass may be null.
struct BinPick {
  int bin;
  unsigned long long above_cnt, above_mass, cnt, mass;
};
__device__ __forceinline__ BinPick find_bin(const uint32_t* cnt, const unsigned long long* mass,
                                            int nbins, bool by_mass, unsigned long long target) {
  __shared__ BinPick pick;
  const int first = threadIdx.x * kBinsPerThread;  // walk positions; bin = nbins - 1 - position
  unsigned long long c = 0, ms = 0;
#pragma unroll
  for (int j = 0; j < kBinsPerThread; ++j) {
    const int pos = first + j;
    if (pos < nbins) {
      c += cnt[nbins - 1 - pos];
      if (mass) ms += mass[nbins - 1 - pos];
    }
  }
  unsigned long long total_c, total_m = 0;
  const unsigned long long before_c = block_exclusive_scan(c, total_c);
  const unsigned long long before_m = mass ? block_exclusive_scan(ms, total_m) : 0;
  int hit = INT_MAX, last = -1;
  unsigned long long rc = before_c, rm = before_m;
#pragma unroll
  for (int j = 0; j < kBinsPerThread; ++j) {
    const int pos = first + j;
    if (pos >= nbins) break;
    const uint32_t n = cnt[nbins - 1 - pos];
    const unsigned long long mm = mass ? mass[nbins - 1 - pos] : 0;
    if (n > 0) {
      last = pos;
      if (hit == INT_MAX && (by_mass ? rm + mm : rc + n) >= target) hit = pos;
    }
    rc += n;
    rm += mm;
  }
  const int hit_all = block_reduce(hit, CombineMin{});
  const int chosen = hit_all != INT_MAX ? hit_all : block_reduce(last, CombineMax{});
  if (chosen < 0) {
    if (threadIdx.x == 0) pick = {-1, 0, 0, 0, 0};
  } else if (chosen >= first && chosen < first + kBinsPerThread) {
    unsigned long long ac = before_c, am = before_m;
    for (int pos = first; pos < chosen; ++pos) {
      ac += cnt[nbins - 1 - pos];
      if (mass) am += mass[nbins - 1 - pos];
    }
    const int b = nbins - 1 - chosen;
    pick = {b, ac, am, cnt[b], mass ? mass[b] : 0ull};
  }
  __syncthreads();
  const BinPick p = pick;
  __syncthreads();
  return p;
}

}  // namespace nanovllm::gpu::sampler_detail
