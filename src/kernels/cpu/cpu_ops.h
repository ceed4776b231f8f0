// The CPU reference kernels: plain float32 C++ over raw pointers, parallel over both cores with
// OpenMP. They are what the CPU backend runs and what the CUDA kernels are checked against.
// Shapes follow runtime/backend.h.
#pragma once

#include <cstdint>

#include "runtime/sampling.h"

namespace nanovllm::cpu {

// Below this much work (elements or multiply-adds) an op runs on one thread: waking a team
// costs more than it saves, and spinning threads hurt neighbours on a loaded machine.
constexpr int64_t kParallelMinWork = int64_t{1} << 15;

// out (T, N) = x (T, K) @ w (N, K)^T [+ bias (N,)]
void linear(const float* x, const float* w, const float* bias, float* out, int64_t T, int64_t N,
            int64_t K);
void rms_norm(const float* x, const float* w, float eps, float* out, int64_t T, int64_t H);
// residual += x; x = rms_norm(residual) * w
void add_rms_norm(float* x, float* residual, const float* w, float eps, int64_t T, int64_t H);
void embedding(const int32_t* ids, const float* table, float* out, int64_t T, int64_t V,
               int64_t H);
void silu_and_mul(const float* gate_up, float* out, int64_t T, int64_t I);
void qk_norm_rope(float* qkv, int64_t T, int nh, int nkv, int d, const float* q_w,
                  const float* k_w, float eps, const float* cos_sin, int64_t max_pos,
                  const int32_t* positions);
// caches (num_blocks, block_size, nkv, d)
void store_kv(const float* qkv, int64_t T, int nh, int nkv, int d, float* k_cache,
              float* v_cache, int64_t num_slots, const int32_t* slot_mapping);
void paged_attention(const float* qkv, int nh, int nkv, int d, float scale,
                     const float* k_cache, const float* v_cache, int block_size,
                     int64_t num_blocks, int num_seqs, const int32_t* cu_seqlens_q,
                     const int32_t* context_lens, const int32_t* block_tables,
                     int max_blocks_per_seq, float* out);
void gather_rows(const float* x, const int32_t* rows, float* out, int64_t R, int64_t T,
                 int64_t H);

// The router's choice per row of router_logits (T, E): softmax, the k largest (larger first,
// ties to the lower expert), weights renormalised to sum 1 when `renormalize`. ids, weights (T, k).
void moe_route(const float* router_logits, int64_t T, int E, int k, bool renormalize, int32_t* ids,
               float* weights);
// Backend::moe_mlp: out (T, H); router (E, H), gate_up (E * 2I, H), down (E * H, I).
void moe_mlp(const float* x, const float* router, const float* gate_up, const float* down, float* out, int64_t T,
             int64_t H, int64_t I, int E, int k, bool renormalize);

SamplerOutput sample(const float* logits, int64_t R, int64_t V, const SamplingBatch& batch);

}  // namespace nanovllm::cpu
