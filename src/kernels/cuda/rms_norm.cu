// RMSNorm, and RMSNorm with the residual add fused in front of it.
//
//   rms_norm:      out[t, i] = w[i] * (x[t, i] * inv_t),  inv_t = 1 / sqrt(mean_i x[t, i]^2 + eps)
//   add_rms_norm:  r[t, i]   = bf16(r[t, i] + x[t, i])          (stored back into residual)
//                  x[t, i]   = w[i] * (r[t, i] * inv_t),   inv_t from the stored r
//   x, out, residual (T, H) bf16; w (H,) bf16; float32 math, results rounded once.
//
// The residual stream stays bf16, as in vLLM and Hugging Face: it is a bf16 tensor between
// layers, and a float32 copy would double the bytes of the one op that touches it. The norm is
// taken of the rounded residual (Hugging Face's order: add in bf16, then norm), so x is exactly
// the norm of what the residual holds; vLLM squares the unrounded sum instead, a difference
// far below bf16's resolution.
//
// Bytes: rms_norm reads 2TH and writes 2TH; add_rms_norm reads 4TH and writes 4TH (w is read
// from L2). One block per row: each thread keeps its MAXR packs of VEC elements in registers
// between the sum of squares (a block reduction) and the scaling, so every element is read
// from memory once. VEC = 8 (16-byte accesses) when H % 8 == 0 and every pointer is 16-byte
// aligned, else 1.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

// `in` and `out` may alias (in-place rms_norm, and add_rms_norm writes x over x): each thread
// reads all its elements before it writes any, and no two threads share an element.
template <int VEC, int MAXR, bool ADD>
__global__ void __launch_bounds__(1024)
    rms_norm_kernel(const bf16* in, bf16* residual, const bf16* __restrict__ w, bf16* out,
                    float eps, int64_t H) {
  detail::pdl_begin();  // launch.cuh: before any global memory access
  const int64_t row = blockIdx.x * H;
  const int nvec = static_cast<int>(H / VEC);
  float v[MAXR][VEC];
  float ss = 0.f;
#pragma unroll
  for (int r = 0; r < MAXR; ++r) {
    const int i = threadIdx.x + r * blockDim.x;
    if (i >= nvec) continue;
    const int64_t off = row + int64_t{i} * VEC;
    detail::load_bf16<VEC>(in + off, v[r]);
    if (ADD) {
      float res[VEC];
      detail::load_bf16<VEC>(residual + off, res);
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[r][j] = __bfloat162float(__float2bfloat16_rn(v[r][j] + res[j]));
      detail::store_bf16<VEC>(residual + off, v[r]);
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) ss += v[r][j] * v[r][j];
  }
  const float inv = rsqrtf(detail::block_sum(ss) / static_cast<float>(H) + eps);
#pragma unroll
  for (int r = 0; r < MAXR; ++r) {
    const int i = threadIdx.x + r * blockDim.x;
    if (i >= nvec) continue;
    float wv[VEC];
    detail::load_bf16<VEC>(w + int64_t{i} * VEC, wv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[r][j] = wv[j] * (v[r][j] * inv);
    detail::store_bf16<VEC>(out + row + int64_t{i} * VEC, v[r]);
  }
}

// Register budget: MAXR * VEC <= 32 floats per thread and MAXR <= 16, so 1024 threads cover
// H <= 32768 with 16-byte packs and H <= 16384 element by element, without spills.
constexpr int kMaxThreads = 1024;
template <int VEC>
constexpr int kMaxR = 32 / VEC < 16 ? 32 / VEC : 16;

// Picks the smallest register array (R packs per thread) that covers the row.
template <int VEC, bool ADD, int R = 1>
void launch_with_r(int64_t per_thread, dim3 grid, int threads, const bf16* in, bf16* residual,
                   const bf16* w, bf16* out, float eps, int64_t H, cudaStream_t stream) {
  if constexpr (R <= kMaxR<VEC>) {
    if (per_thread <= R)
      detail::launch(rms_norm_kernel<VEC, R, ADD>, grid, threads, 0, stream, in, residual, w, out, eps, H);
    else
      launch_with_r<VEC, ADD, 2 * R>(per_thread, grid, threads, in, residual, w, out, eps, H, stream);
  }
}

template <int VEC, bool ADD>
void launch(const bf16* in, bf16* residual, const bf16* w, bf16* out, float eps, int64_t T,
            int64_t H, cudaStream_t stream, const char* op) {
  const int64_t nvec = H / VEC;
  const int threads = static_cast<int>(std::min<int64_t>(kMaxThreads, detail::round_up32(nvec)));
  const int64_t per_thread = (nvec + threads - 1) / threads;
  detail::require(per_thread <= kMaxR<VEC>, op,
                  "H=" + std::to_string(H) + " is larger than one block covers (" +
                      std::to_string(int64_t{kMaxThreads} * kMaxR<VEC> * VEC) +
                      (VEC == 1 ? " on the unaligned path; H a multiple of 8 with 16-byte aligned "
                                  "pointers takes the 16-byte path)"
                                : ")"));
  launch_with_r<VEC, ADD>(per_thread, dim3(static_cast<unsigned>(T)), threads, in, residual, w,
                          out, eps, H, stream);
  NANOVLLM_CUDA_CHECK_LAUNCH();
}

void check_args(const char* op, int64_t T, int64_t H, float eps) {
  detail::require(T >= 0 && T <= INT32_MAX, op, "T must be in [0, 2^31), got " + std::to_string(T));
  detail::require(H > 0, op, "H must be positive, got " + std::to_string(H));
  detail::require(eps >= 0.f, op, "eps must be non-negative");
}

}  // namespace

void rms_norm(const void* x, const void* weight, float eps, void* out, int64_t T, int64_t H,
              cudaStream_t stream) {
  check_args("rms_norm", T, H, eps);
  if (T == 0) return;
  detail::require(x && weight && out, "rms_norm", "null pointer");
  const auto* xb = static_cast<const bf16*>(x);
  const auto* wb = static_cast<const bf16*>(weight);
  auto* ob = static_cast<bf16*>(out);
  if (H % 8 == 0 && detail::aligned16(x) && detail::aligned16(weight) && detail::aligned16(out))
    launch<8, false>(xb, nullptr, wb, ob, eps, T, H, stream, "rms_norm");
  else
    launch<1, false>(xb, nullptr, wb, ob, eps, T, H, stream, "rms_norm");
}

void add_rms_norm(void* x, void* residual, const void* weight, float eps, int64_t T, int64_t H,
                  cudaStream_t stream) {
  check_args("add_rms_norm", T, H, eps);
  if (T == 0) return;
  detail::require(x && residual && weight, "add_rms_norm", "null pointer");
  detail::require(x != residual, "add_rms_norm", "x and residual must be different buffers");
  auto* xb = static_cast<bf16*>(x);
  auto* rb = static_cast<bf16*>(residual);
  const auto* wb = static_cast<const bf16*>(weight);
  if (H % 8 == 0 && detail::aligned16(x) && detail::aligned16(residual) && detail::aligned16(weight))
    launch<8, true>(xb, rb, wb, xb, eps, T, H, stream, "add_rms_norm");
  else
    launch<1, true>(xb, rb, wb, xb, eps, T, H, stream, "add_rms_norm");
}

}  // namespace nanovllm::gpu
