// A K/V store that arrives late, for the ordering tests of kernels that start work before
// their programmatic-dependent-launch wait (see kernels/cuda/launch.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanovllm::testing {

// As gpu::store_kv (qkv rows' k and v heads to the paged caches at slots[t]; slots outside
// [0, num_slots) skipped), but launched like every engine kernel (with PDL) and holding its
// writes back for spin_us microseconds after its wait: the kernel launched after it starts
// while the old bytes are still in place, so reading them before its own wait shows.
void late_store_kv(const void* qkv, int T, int nh, int nkv, int d, void* k_cache, void* v_cache, int64_t num_slots,
                   const int32_t* slots, int spin_us, cudaStream_t stream);

}  // namespace nanovllm::testing
