// SiLU-and-multiply, the gated MLP's activation.
//
//   out[t, i] = bf16( bf16(silu(g)) * u ),  g = gate_up[t, i], u = gate_up[t, I + i],
//   silu(g) = g / (1 + exp(-g));  gate_up (T, 2I) bf16, out (T, I) bf16.
//
// silu is rounded to bf16 before the product because Hugging Face (act_fn(gate) * up in bf16)
// and vLLM both do; the end-to-end check compares against the former.
//
// Bytes: 4TI read, 2TI written. A 2-D grid: blockIdx.y walks the rows, blockIdx.x the I / VEC
// output packs of a row, each thread reading one gate pack and one up pack; VEC = 8 (16-byte
// accesses) when I % 8 == 0 and both pointers are 16-byte aligned, else 1. Measured on the H200
// (CudaKernelsPerf.ElementwiseTiming, 2026-11-28), at 16,384 x 3,072: this grid 113 us; the
// flat grid-stride loop it replaced, which split its index with a 64-bit division, 116 us (an
// earlier run); two packs per thread loaded together, 132 us in the same run as this one.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 256;

template <int VEC>
__global__ void __launch_bounds__(kThreads)
    silu_and_mul_kernel(const bf16* __restrict__ gate_up, bf16* __restrict__ out, int64_t T, int64_t I) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  const int row_vecs = static_cast<int>(I / VEC);
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    const bf16* g_row = gate_up + t * 2 * I;
    bf16* o_row = out + t * I;
    for (int v = blockIdx.x * kThreads + threadIdx.x; v < row_vecs; v += gridDim.x * kThreads) {
      const int64_t i = int64_t{v} * VEC;
      float g[VEC], u[VEC], y[VEC];
      detail::load_bf16<VEC>(g_row + i, g);
      detail::load_bf16<VEC>(g_row + I + i, u);
#pragma unroll
      for (int j = 0; j < VEC; ++j) y[j] = detail::silu_bf16(g[j]) * u[j];
      detail::store_bf16<VEC>(o_row + i, y);
    }
  }
}

}  // namespace

void silu_and_mul(const void* gate_up, void* out, int64_t T, int64_t I, cudaStream_t stream) {
  detail::require(T >= 0, "silu_and_mul", "T must be non-negative, got " + std::to_string(T));
  detail::require(I > 0, "silu_and_mul", "I must be positive, got " + std::to_string(I));
  if (T == 0) return;
  detail::require(gate_up && out, "silu_and_mul", "null pointer");
  const bool vec = I % 8 == 0 && detail::aligned16(gate_up) && detail::aligned16(out);
  detail::require(I / (vec ? 8 : 1) <= INT32_MAX, "silu_and_mul", "I too large, got " + std::to_string(I));
  const int64_t row_packs = vec ? I / 8 : I;
  // x: a row's packs (a grid-stride loop past 1024 blocks); y: rows, up to the grid's limit
  // (a grid-stride loop past it).
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((row_packs + kThreads - 1) / kThreads, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(T, 65535)));
  const auto* in = static_cast<const bf16*>(gate_up);
  auto* o = static_cast<bf16*>(out);
  if (vec)
    detail::launch(silu_and_mul_kernel<8>, grid, kThreads, 0, stream, in, o, T, I);
  else
    detail::launch(silu_and_mul_kernel<1>, grid, kThreads, 0, stream, in, o, T, I);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace nanovllm::gpu
