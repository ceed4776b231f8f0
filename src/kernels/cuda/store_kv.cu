// Writing this step's keys and values into the paged KV cache.
//
//   s = slot_mapping[t];  if 0 <= s < num_slots:
//     k_cache[s] = qkv[t, nh d       : (nh + nkv) d]     (as (nkv, d))
//     v_cache[s] = qkv[t, (nh + nkv) d : (nh + 2 nkv) d]
//   qkv (T, (nh + 2 nkv) d) bf16; caches (num_blocks, block_size, nkv, d) bf16, viewed as
//   (num_slots, nkv d) with slot = block * block_size + offset; slot_mapping (T,) int32, -1 for
//   tokens whose K/V is not stored (e.g. a prefix already cached).
//
// A copy: bits in = bits out. Bytes: 4 T nkv d read and written. A grid-stride loop over
// (token, k or v, pack) with VEC = 8 (16-byte accesses) when d % 8 == 0 and the three pointers
// are 16-byte aligned, else 1. Distinct slots make the writes disjoint.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;
using detail::Pack;

template <int VEC>
__global__ void store_kv_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ k_cache,
                                bf16* __restrict__ v_cache, const int32_t* __restrict__ slot_mapping,
                                int64_t T, int64_t q_width, int64_t kv_width, int64_t num_slots) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  using P = Pack<bf16, VEC>;
  const int64_t kv_vecs = kv_width / VEC;
  const int64_t per_token = 2 * kv_vecs;
  const int64_t n = T * per_token;
  const int64_t row = q_width + 2 * kv_width;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < n;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = k / per_token;
    const int64_t slot = slot_mapping[t];
    if (slot < 0 || slot >= num_slots) continue;
    const int64_t rem = k - t * per_token;
    const bool is_v = rem >= kv_vecs;
    const int64_t i = (is_v ? rem - kv_vecs : rem) * VEC;
    const bf16* src = qkv + t * row + q_width + (is_v ? kv_width : 0) + i;
    bf16* dst = (is_v ? v_cache : k_cache) + slot * kv_width + i;
    *reinterpret_cast<P*>(dst) = *reinterpret_cast<const P*>(src);
  }
}

}  // namespace

void store_kv(const void* qkv, int64_t T, int nh, int nkv, int d, void* k_cache, void* v_cache,
              int64_t num_slots, const int32_t* slot_mapping, cudaStream_t stream) {
  detail::require(T >= 0, "store_kv", "T must be non-negative, got " + std::to_string(T));
  detail::require(nh >= 0 && nkv > 0 && d > 0, "store_kv",
                  "need nh >= 0, nkv > 0, d > 0; got nh=" + std::to_string(nh) +
                      " nkv=" + std::to_string(nkv) + " d=" + std::to_string(d));
  detail::require(num_slots >= 0, "store_kv", "num_slots must be non-negative");
  if (T == 0) return;
  detail::require(qkv && k_cache && v_cache && slot_mapping, "store_kv", "null pointer");
  detail::require(k_cache != v_cache, "store_kv", "k_cache and v_cache must be different buffers");
  const int64_t q_width = int64_t{nh} * d;
  const int64_t kv_width = int64_t{nkv} * d;
  const bool vec = d % 8 == 0 && detail::aligned16(qkv) && detail::aligned16(k_cache) &&
                   detail::aligned16(v_cache);
  const int64_t items = T * 2 * (vec ? kv_width / 8 : kv_width);
  constexpr int threads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((items + threads - 1) / threads, 1 << 16));
  const auto* in = static_cast<const bf16*>(qkv);
  auto* kc = static_cast<bf16*>(k_cache);
  auto* vc = static_cast<bf16*>(v_cache);
  if (vec)
    detail::launch(store_kv_kernel<8>, blocks, threads, 0, stream, in, kc, vc, slot_mapping, T, q_width, kv_width, num_slots);
  else
    detail::launch(store_kv_kernel<1>, blocks, threads, 0, stream, in, kc, vc, slot_mapping, T, q_width, kv_width, num_slots);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
