// Kernel launches with programmatic dependent launch (PDL, compute capability 9.0 and later).
//
// A batch-1 decode step is a chain of ~300 small kernels (Qwen3-0.6B); between two of them the
// GPU drains one grid and only then launches the next, a gap of a few microseconds each that
// the step pays ~300 times. With PDL a kernel may be launched while the one before it is still
// running. Every kernel here begins with pdl_begin(), which (1) waits until the grid it depends
// on has completed and its writes are visible, before it touches any memory, then (2) lets the
// next kernel in the stream be launched, so that kernel's launch and set-up overlap this one's
// work. The results are those of plain stream order. Kernels not launched through launch()
// (cuBLAS) keep plain stream order on both sides.
//
// Wait first, then trigger: the other order (trigger, then wait) let each early-launched kernel
// at once launch the one after it, so a chain of grids sat resident, waiting, holding the SMs'
// registers and shared memory: measured slower (H200, e9aaaf1: Qwen3-0.6B 1.185 -> 1.264 ms per
// token). Triggering after the wait keeps at most one grid launched ahead.
//
// A kernel may read memory that no earlier kernel writes (weights) before it waits: the GEMV
// prefetches its first weight chunks into L2 there (pdl_wait() and pdl_trigger() separately).
//
// Every kernel launched through launch() must call pdl_begin() (or pdl_wait()) before its
// first read of anything an earlier kernel writes, and before its first write. (The decode
// attention's early launches read cached K/V rows that only earlier steps wrote: see there.)
//
// On by default on compute capability 9.x+ (NANOVLLM_PDL=0 turns it off; without the attribute
// these return at once). Measured on an H200 (2026-11-28), off vs on: Qwen3-0.6B batch 1
// 1.059 / 1.077 vs 1.054 / 1.067 ms per token (the GEMV prefetching only when on), bench.py
// unchanged: about 1%, not the ~0.3 ms per token first hoped for.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda_check.h"

namespace nanovllm::gpu::detail {

// True when launches carry the PDL attribute: a compute capability 9.x+ device, unless
// NANOVLLM_PDL=0 (read once per process).
bool pdl_enabled();

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_trigger();
}

// The decode attention's small-batch launches (paged_attention_decode.cu) trigger first and
// then wait when they have at most kEarlyTriggerCtas CTAs per split index, so the next kernel
// (the o_proj GEMV) is launched onto the SMs the attention leaves idle and streams its first
// weights meanwhile; it still waits for this grid before reading what it wrote. Larger grids
// keep wait-then-trigger. (Until this criterion ignored the split slots, the early path never
// ran in the engine: a graph's bound of 4,096 keys gives a batch-1 grid of 128 CTAs. The ~1%
// recorded for it in 56d8240 was run-to-run spread.) Triggering early in the norm, rotary, SiLU,
// K/V-store and embedding kernels as well was slower (H200: 0.6B 1.039-1.041 -> 1.104 ms per
// token, 8B 4.972-4.991 -> 5.017-5.053): the chain of early grids again.
constexpr unsigned kEarlyTriggerCtas = 64;

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
