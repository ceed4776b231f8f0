// The CUDA kernels' launchers: what the CUDA backend calls. Plain C++17 over raw device
// pointers, so g++-compiled code (the backend, the tests) includes it without CUDA types: bf16
// tensors are `void*` / `const void*` holding __nv_bfloat16. One .cu file per op in this folder
// holds the math, the kernel and its launcher.
//
// Shapes follow runtime/backend.h (T tokens, H hidden, I intermediate, V vocabulary, nh / nkv
// query / key-value heads, d head_dim). Every launcher
//   - checks its preconditions and throws nanovllm::Error naming the op and the bad argument;
//   - queues its work on `stream` and returns (no synchronisation, no allocation), so it can
//     be captured in a CUDA graph;
//   - uses 16-byte vector accesses where sizes and pointer alignment allow, and an
//     element-at-a-time path otherwise (same results);
//   - checks the launch (NANOVLLM_CUDA_CHECK_LAUNCH); errors from the kernel's execution
//     surface at the next checked synchronising call;
//   - does nothing when T == 0.
// All math is float32; bf16 results are rounded once, to nearest even.
//
// The namespace is `gpu`, not `cuda`, so that `cuda::std` (libcu++) stays unambiguous inside
// namespace nanovllm.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanovllm::gpu {

// out (T, H) = table (V, H) [ids (T,)]. An id outside [0, V) gives a row of zeros, as the CPU
// reference does (the engine validates ids; this only keeps a bug from reading out of bounds).
void embedding(const int32_t* ids, const void* table, void* out, int64_t T, int64_t V, int64_t H,
               cudaStream_t stream);

// out (T, H) = x / sqrt(mean(x^2) + eps) * weight (H,), per row. out may alias x.
void rms_norm(const void* x, const void* weight, float eps, void* out, int64_t T, int64_t H,
              cudaStream_t stream);

// In place, per row: residual (T, H) += x (T, H), rounded to bf16 and stored; then
// x = rms_norm(residual) * weight. The norm is taken of the stored (rounded) residual, as
// Hugging Face computes it in bf16, so x is exactly the norm of what the residual stream holds.
void add_rms_norm(void* x, void* residual, const void* weight, float eps, int64_t T, int64_t H,
                  cudaStream_t stream);

// out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:]; gate_up (T, 2I). silu is rounded to bf16
// before the product, as Hugging Face and vLLM compute it.
void silu_and_mul(const void* gate_up, void* out, int64_t T, int64_t I, cudaStream_t stream);

// In place on qkv (T, (nh + 2 nkv) d): RMSNorm each q head with q_weight (d,) and each k head
// with k_weight (d,) (either may be null: no norm for that part), then rotate q and k
// (rotate-half) by cos_sin (max_pos, d) float32 at positions (T,) (clamped into [0, max_pos)).
// v is untouched. One pass: each head is read once and written once. d even, at most 512.
void qk_norm_rope(void* qkv, int64_t T, int nh, int nkv, int d, const void* q_weight,
                  const void* k_weight, float eps, const float* cos_sin, int64_t max_pos,
                  const int32_t* positions, cudaStream_t stream);

// Copies k and v of each token — the (nkv, d) slices of qkv (T, (nh + 2 nkv) d) after the q
// heads — into k_cache and v_cache (num_blocks, block_size, nkv, d) at slot_mapping (T,);
// num_slots = num_blocks * block_size. A slot of -1 (or any slot outside [0, num_slots)) is
// skipped. Slots must be distinct (the engine gives each token its own).
void store_kv(const void* qkv, int64_t T, int nh, int nkv, int d, void* k_cache, void* v_cache,
              int64_t num_slots, const int32_t* slot_mapping, cudaStream_t stream);

}  // namespace nanovllm::gpu
