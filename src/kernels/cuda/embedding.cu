// Embedding lookup: a row gather.
//
//   out[t, :] = table[ids[t], :]     ids (T,) int32, table (V, H) bf16, out (T, H) bf16
//   out[t, :] = 0                    where ids[t] is outside [0, V)
//
// Pure data movement: 2 T H bytes read, 2 T H written. One block per token; its threads copy
// the row in 16-byte packs (8 bf16) when H % 8 == 0 and both pointers are 16-byte aligned,
// one element at a time otherwise.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;
using detail::Pack;

template <int VEC>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const bf16* __restrict__ table,
                                 bf16* __restrict__ out, int64_t V, int64_t H) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  using P = Pack<bf16, VEC>;
  const int64_t t = blockIdx.x;
  const int64_t id = ids[t];
  const int64_t nvec = H / VEC;
  P* dst = reinterpret_cast<P*>(out + t * H);
  if (id < 0 || id >= V) {
    P zero;
#pragma unroll
    for (int i = 0; i < VEC; ++i) zero.v[i] = __float2bfloat16_rn(0.f);
    for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) dst[i] = zero;
    return;
  }
  const P* src = reinterpret_cast<const P*>(table + id * H);
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) dst[i] = src[i];
}

// One thread per token: a step's input ids are at most max_num_batched_tokens.
__global__ void fill_sampled_ids_kernel(int32_t* __restrict__ ids, const int32_t* __restrict__ rows,
                                        const int32_t* __restrict__ tokens, int64_t T) {
  detail::pdl_begin();
  const int64_t t = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const int32_t r = rows[t];
  if (r >= 0) ids[t] = tokens[r];
}

}  // namespace

void fill_sampled_ids(int32_t* ids, const int32_t* rows, const int32_t* tokens, int64_t T, cudaStream_t stream) {
  using detail::require;
  require(T >= 0 && T <= INT32_MAX, "fill_sampled_ids", "T must be in [0, 2^31), got " + std::to_string(T));
  if (T == 0) return;
  require(ids && rows && tokens, "fill_sampled_ids", "null pointer");
  const int threads = 128;
  const dim3 grid(static_cast<unsigned>((T + threads - 1) / threads));
  detail::launch(fill_sampled_ids_kernel, grid, threads, 0, stream, ids, rows, tokens, T);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

void embedding(const int32_t* ids, const void* table, void* out, int64_t T, int64_t V, int64_t H,
               cudaStream_t stream) {
  using detail::require;
  require(T >= 0 && T <= INT32_MAX, "embedding", "T must be in [0, 2^31), got " + std::to_string(T));
  require(V > 0 && H > 0, "embedding",
          "V and H must be positive, got V=" + std::to_string(V) + " H=" + std::to_string(H));
  if (T == 0) return;
  require(ids && table && out, "embedding", "null pointer");
  const bool vec = H % 8 == 0 && detail::aligned16(table) && detail::aligned16(out);
  const int64_t nvec = vec ? H / 8 : H;
  const int threads = static_cast<int>(std::min<int64_t>(256, detail::round_up32(nvec)));
  const dim3 grid(static_cast<unsigned>(T));
  if (vec)
    detail::launch(embedding_kernel<8>, grid, threads, 0, stream, ids, static_cast<const bf16*>(table),
                                                      static_cast<bf16*>(out), V, H);
  else
    detail::launch(embedding_kernel<1>, grid, threads, 0, stream, ids, static_cast<const bf16*>(table),
                                                      static_cast<bf16*>(out), V, H);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
