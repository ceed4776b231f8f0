// float32 -> bf16 conversion on the device, round to nearest even (NaN kept quiet), matching
// runtime/dtype.h's f32_to_bf16 bit for bit.
#include <cuda_bf16.h>

#include <cstdio>

#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"

namespace nanovllm {
namespace {

__global__ void f32_to_bf16_kernel(const float* __restrict__ in, __nv_bfloat16* __restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    out[i] = __float2bfloat16_rn(in[i]);
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

std::string cuda_device_summary(int device) {
  cudaDeviceProp p{};
  NANOVLLM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %d SMs, %.1f GiB", p.name, p.major, p.minor,
                p.multiProcessorCount, p.totalGlobalMem / double(1 << 30));
  return buf;
}

void cuda_convert_f32_to_bf16(const float* host_in, unsigned short* host_out, size_t n) {
  if (n == 0) return;
  float* d_in = nullptr;
  __nv_bfloat16* d_out = nullptr;
  NANOVLLM_CUDA_CHECK(cudaMalloc(&d_in, n * sizeof(float)));
  NANOVLLM_CUDA_CHECK(cudaMalloc(&d_out, n * sizeof(__nv_bfloat16)));
  NANOVLLM_CUDA_CHECK(cudaMemcpy(d_in, host_in, n * sizeof(float), cudaMemcpyHostToDevice));
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 4096));
  f32_to_bf16_kernel<<<blocks, 256>>>(d_in, d_out, n);
  NANOVLLM_CUDA_CHECK_LAUNCH();
  NANOVLLM_CUDA_CHECK(cudaMemcpy(host_out, d_out, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
  NANOVLLM_CUDA_CHECK(cudaFree(d_in));
  NANOVLLM_CUDA_CHECK(cudaFree(d_out));
}

}  // namespace nanovllm
