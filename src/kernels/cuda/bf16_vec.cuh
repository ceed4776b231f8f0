// Device helpers shared by the memory-bound kernels (CUDA C++17): packed bf16 / float loads and
// stores of up to 16 bytes, warp and block sums, and the host-side checks their launchers make.
//
// A Pack<T, N> is N elements aligned to their full size, so a Pack<__nv_bfloat16, 8> or a
// Pack<float, 4> moves as one 16-byte LDG.128/STG.128. Kernels are templated on the pack width:
// 8 bf16 (16 bytes) where the launcher proved alignment, 1 element otherwise.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "runtime/error.h"

namespace nanovllm::gpu::detail {

using bf16 = __nv_bfloat16;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Reads N bf16 at p (aligned to 2N bytes) as floats.
template <int N>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&out)[N]) {
  const Pack<bf16, N> pk = *reinterpret_cast<const Pack<bf16, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = __bfloat162float(pk.v[i]);
}

// Writes N floats at p (aligned to 2N bytes) as bf16, round to nearest even.
template <int N>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&in)[N]) {
  Pack<bf16, N> pk;
#pragma unroll
  for (int i = 0; i < N; ++i) pk.v[i] = __float2bfloat16_rn(in[i]);
  *reinterpret_cast<Pack<bf16, N>*>(p) = pk;
}

// Reads N floats at p (aligned to 4 min(N, 4) bytes) in 16-byte pieces where N allows.
template <int N>
__device__ __forceinline__ void load_f32(const float* p, float (&out)[N]) {
  constexpr int W = N % 4 == 0 ? 4 : (N % 2 == 0 ? 2 : 1);
#pragma unroll
  for (int i = 0; i < N; i += W) {
    const Pack<float, W> pk = *reinterpret_cast<const Pack<float, W>*>(p + i);
#pragma unroll
    for (int j = 0; j < W; ++j) out[i + j] = pk.v[j];
  }
}

// Sum over the `width` lanes of an aligned lane group (width a power of two <= 32). Every lane
// of the warp must call it (full-mask shuffles); each lane gets its group's sum.
__device__ __forceinline__ float group_sum(float v, int width = 32) {
  for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block; blockDim.x a multiple of 32, at most 1024. Every thread must call it and
// every thread gets the total. Called at most once per kernel (its shared buffer is not
// re-armed with a second barrier).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  v = group_sum(v);
  const int lane = threadIdx.x & 31;
  if (lane == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? warp_sums[lane] : 0.f;
  return group_sum(v);  // every warp reduces the warp sums itself: no second broadcast
}

// Host side.
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
inline int round_up32(int64_t n) { return static_cast<int>((n + 31) / 32 * 32); }

inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string("nanovllm::gpu::") + op + ": " + what);
}

}  // namespace nanovllm::gpu::detail
