// Activation math shared by the kernels that apply it, so that every path gives the same bits.
#pragma once

#include <cuda_bf16.h>

namespace nanovllm::gpu::detail {

// silu(g) = g / (1 + exp(-g)), rounded to bf16 (returned as float): Hugging Face computes
// act_fn(gate) in bf16 before multiplying by up, and vLLM does the same.
__device__ __forceinline__ float silu_bf16(float g) {
  return __bfloat162float(__float2bfloat16_rn(g / (1.f + expf(-g))));
}

}  // namespace nanovllm::gpu::detail
