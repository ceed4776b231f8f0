// Kernel launches with programmatic dependent launch (PDL, compute capability 9.0 and later).
//
// A batch-1 decode step is a chain of ~300 small kernels (Qwen3-0.6B); between two of them the
// GPU drains one grid and only then launches the next, a gap of a few microseconds each that
// the step pays ~300 times. With PDL a kernel may be launched while the one before it is still
// running: every kernel here begins with pdl_begin(), which (1) lets the next kernel in the
// stream be launched as soon as every CTA of this one is resident, so its launch and set-up
// overlap this one's tail, and (2) waits until the grids this one depends on have completed and
// their writes are visible, before it touches any memory. So the results are those of plain
// stream order; only the launch latency is hidden. Kernels not launched through launch() (cuBLAS)
// keep plain stream order on both sides.
//
// Every kernel launched through launch() must call pdl_begin() before its first global memory
// access: without it a kernel could read inputs still being written.
//
// Off by default (NANOVLLM_PDL=1 turns it on): measured on an H200 (2026-11-28, e9aaaf1), it made
// batch-1 decode slower, not faster: Qwen3-0.6B 1.185 -> 1.264 ms per token, Qwen3-8B 4.912 ->
// 4.944, bench.py unchanged (5.59 / 5.60 s). Without the attribute, pdl_begin() returns at once.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda_check.h"

namespace nanovllm::gpu::detail {

// True when launches carry the PDL attribute: a compute capability 9.x+ device and
// NANOVLLM_PDL=1 (read once per process).
bool pdl_enabled();

__device__ __forceinline__ void pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), with the PDL attribute when enabled; checked.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  NANOVLLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace nanovllm::gpu::detail
