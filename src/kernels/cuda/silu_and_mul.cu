// SiLU-and-multiply, the gated MLP's activation.
//
//   out[t, i] = bf16( bf16(silu(g)) * u ),  g = gate_up[t, i], u = gate_up[t, I + i],
//   silu(g) = g / (1 + exp(-g));  gate_up (T, 2I) bf16, out (T, I) bf16.
//
// silu is rounded to bf16 before the product because Hugging Face (act_fn(gate) * up in bf16)
// and vLLM both do; the end-to-end check compares against the former.
//
// Bytes: 4TI read, 2TI written. A grid-stride loop over the T * I / VEC output packs, each
// thread reading one gate pack and one up pack; VEC = 8 (16-byte accesses) when I % 8 == 0 and
// both pointers are 16-byte aligned, else 1.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

template <int VEC>
__global__ void silu_and_mul_kernel(const bf16* __restrict__ gate_up, bf16* __restrict__ out,
                                    int64_t T, int64_t I) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  const int64_t row_vecs = I / VEC;
  const int64_t n = T * row_vecs;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < n;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = k / row_vecs;
    const int64_t i = (k - t * row_vecs) * VEC;
    const bf16* g_ptr = gate_up + t * 2 * I + i;
    float g[VEC], u[VEC], y[VEC];
    detail::load_bf16<VEC>(g_ptr, g);
    detail::load_bf16<VEC>(g_ptr + I, u);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float s = __bfloat162float(__float2bfloat16_rn(g[j] / (1.f + expf(-g[j]))));
      y[j] = s * u[j];
    }
    detail::store_bf16<VEC>(out + t * I + i, y);
  }
}

}  // namespace

void silu_and_mul(const void* gate_up, void* out, int64_t T, int64_t I, cudaStream_t stream) {
  detail::require(T >= 0, "silu_and_mul", "T must be non-negative, got " + std::to_string(T));
  detail::require(I > 0, "silu_and_mul", "I must be positive, got " + std::to_string(I));
  if (T == 0) return;
  detail::require(gate_up && out, "silu_and_mul", "null pointer");
  const bool vec = I % 8 == 0 && detail::aligned16(gate_up) && detail::aligned16(out);
  const int64_t packs = T * (vec ? I / 8 : I);
  constexpr int threads = 256;
  // Enough blocks to fill the card many times over; the grid-stride loop covers the rest.
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((packs + threads - 1) / threads, 1 << 16));
  const auto* in = static_cast<const bf16*>(gate_up);
  auto* o = static_cast<bf16*>(out);
  if (vec)
    detail::launch(silu_and_mul_kernel<8>, blocks, threads, 0, stream, in, o, T, I);
  else
    detail::launch(silu_and_mul_kernel<1>, blocks, threads, 0, stream, in, o, T, I);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
