#include "late_store_kv.h"

#include "kernels/cuda/launch.cuh"
#include "runtime/cuda_check.h"

namespace nanovllm::testing {
namespace {

__device__ uint64_t now_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// One CTA: thread 0 spins, then every thread copies 16-byte chunks (d is a multiple of 8).
__global__ void late_store_kv_kernel(const uint4* qkv, int T, int nh, int nkv, int d, uint4* k_cache,
                                     uint4* v_cache, int64_t num_slots, const int32_t* slots, int spin_us) {
  gpu::detail::pdl_begin();  // as every kernel: the next one may launch now
  if (threadIdx.x == 0) {
    const uint64_t until = now_ns() + uint64_t(spin_us) * 1000;
    while (now_ns() < until) {
    }
  }
  __syncthreads();
  const int chunks = nkv * d / 8;              // 16-byte chunks of one row's k (or v) heads
  const int64_t row = int64_t(nh + 2 * nkv) * d / 8;
  for (int64_t i = threadIdx.x; i < int64_t(T) * chunks; i += blockDim.x) {
    const int64_t t = i / chunks, c = i % chunks;
    const int64_t slot = slots[t];
    if (slot < 0 || slot >= num_slots) continue;
    k_cache[slot * chunks + c] = qkv[t * row + int64_t(nh) * d / 8 + c];
    v_cache[slot * chunks + c] = qkv[t * row + int64_t(nh + nkv) * d / 8 + c];
  }
}

}  // namespace

void late_store_kv(const void* qkv, int T, int nh, int nkv, int d, void* k_cache, void* v_cache, int64_t num_slots,
                   const int32_t* slots, int spin_us, cudaStream_t stream) {
  gpu::detail::launch(late_store_kv_kernel, dim3(1), dim3(256), 0, stream, static_cast<const uint4*>(qkv), T, nh, nkv,
                      d, static_cast<uint4*>(k_cache), static_cast<uint4*>(v_cache), num_slots, slots, spin_us);
}

}  // namespace nanovllm::testing
