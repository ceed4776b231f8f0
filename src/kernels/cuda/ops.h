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
#include <string>

namespace nanovllm::gpu {

// out (T, H) = table (V, H) [ids (T,)]. An id outside [0, V) gives a row of zeros, as the CPU
// reference does (the engine validates ids; this only keeps a bug from reading out of bounds).
void embedding(const int32_t* ids, const void* table, void* out, int64_t T, int64_t V, int64_t H,
               cudaStream_t stream);

// ids[t] = tokens[rows[t]] where rows[t] >= 0 (else unchanged), t < T: a step's input ids that
// the previous step sampled, read on the device (the engine queues a step before the host has
// the tokens of the one before it). rows[t] must index a token the sampler wrote.
void fill_sampled_ids(int32_t* ids, const int32_t* rows, const int32_t* tokens, int64_t T, cudaStream_t stream);

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

// qk_norm_rope, then store_kv (below) of the rotated k and the v, in one kernel: the cache gets
// the same bits the two calls would write. The caches' other rows are untouched.
void qk_norm_rope_store_kv(void* qkv, int64_t T, int nh, int nkv, int d, const void* q_weight,
                           const void* k_weight, float eps, const float* cos_sin, int64_t max_pos,
                           const int32_t* positions, void* k_cache, void* v_cache, int64_t num_slots,
                           const int32_t* slot_mapping, cudaStream_t stream);

// Copies k and v of each token — the (nkv, d) slices of qkv (T, (nh + 2 nkv) d) after the q
// heads — into k_cache and v_cache (num_blocks, block_size, nkv, d) at slot_mapping (T,);
// num_slots = num_blocks * block_size. A slot of -1 (or any slot outside [0, num_slots)) is
// skipped. Slots must be distinct (the engine gives each token its own).
void store_kv(const void* qkv, int64_t T, int nh, int nkv, int d, void* k_cache, void* v_cache,
              int64_t num_slots, const int32_t* slot_mapping, cudaStream_t stream);

// ---- Paged attention (paged_attention_decode.cu, paged_attention_prefill.cu) ----
// Causal grouped-query attention of the q heads of qkv (T, (nh + 2 nkv) d) bf16 over the paged
// caches k_cache, v_cache (num_blocks, block_size, nkv, d) bf16, as cpu::paged_attention and
// runtime/attention_metadata.h define it: sequence s owns query rows [cu_seqlens_q[s],
// cu_seqlens_q[s+1]) and keys 0 .. context_lens[s] - 1, read through block_tables (num_seqs,
// max_blocks_per_seq) int32 (-1 past the end); its query row i (of q_len) sees keys
// 0 .. context_lens[s] - q_len + i. out (T, nh d) bf16; group g = nh / nkv (any); d is 64, 128
// or 256; any block_size >= 1. float32 softmax and sums; out rounded once. Pointers to bf16
// data 16-byte aligned. A row that sees no key gets zeros (never NaN). A block id outside
// [0, num_blocks) inside a context is a caller error that never reads out of bounds: decode
// masks its keys (as the CPU does), prefill reads them as zero keys and values. Both queue work
// on `stream` only: no allocation, no synchronisation, so a CUDA graph can capture them.

// Decode steps (one query row per sequence, T == num_seqs: row s belongs to sequence s), as
// flash-decoding: the key range of each sequence is split across CTAs, then combined. The split
// depends on the sequence's own context length only, so its output bits do not depend on the
// batch it is in. max_context_len bounds every context_lens[s] (or is the capacity a captured
// graph will see; keys past it are ignored); with the other sizes it fixes the grid and the
// workspace. workspace (float32 partials, 16-byte
// aligned) must hold paged_attention_decode_workspace_bytes(max_num_seqs, nh, nkv, d,
// max_context_len) for some max_num_seqs >= num_seqs; it may be null when that is 0.
// counters: null, or paged_attention_decode_counters(max_num_seqs, nh, nkv) ints for some
// max_num_seqs >= num_seqs, all zero, which each call leaves zero again (so one zeroed buffer
// serves every later call on the same stream, graph replays included). With them the
// sequences' splits are combined inside the one kernel; without, by a second kernel. The
// output bits are the same either way.
// Ordering (programmatic dependent launch): with counters and few sequences the kernel reads
// context_lens, block_tables and each sequence's cached rows 0 .. context_lens[s] - 2 before it
// waits for the kernel launched just before it. So that kernel may write q and each
// sequence's newest row (context_lens[s] - 1), as the step's K/V store does, but not the older
// rows, the lengths or the tables: those must come from earlier steps or host copies.
size_t paged_attention_decode_workspace_bytes(int max_num_seqs, int nh, int nkv, int d,
                                              int max_context_len);
size_t paged_attention_decode_counters(int max_num_seqs, int nh, int nkv);
void paged_attention_decode(const void* qkv, int nh, int nkv, int d, float scale,
                            const void* k_cache, const void* v_cache, int block_size,
                            int64_t num_blocks, int num_seqs, const int32_t* context_lens,
                            const int32_t* block_tables, int max_blocks_per_seq,
                            int max_context_len, void* out, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream, int* counters = nullptr);

// Any step (prefill, chunked prefill with a cached prefix, mixed with decode rows): FlashAttention-2
// tiling on the tensor cores; at head_dim 128 on Hopper, warpgroup MMAs as FlashAttention-3 does.
// T = cu_seqlens_q[num_seqs] (the caller guarantees it; the grid is sized from T, so no device
// value is read on the host).
void paged_attention_prefill(const void* qkv, int64_t T, int nh, int nkv, int d, float scale,
                             const void* k_cache, const void* v_cache, int block_size,
                             int64_t num_blocks, int num_seqs, const int32_t* cu_seqlens_q,
                             const int32_t* context_lens, const int32_t* block_tables,
                             int max_blocks_per_seq, void* out, cudaStream_t stream);

// True when head_dim 128 prefill runs the Hopper wgmma kernel here (sm_90a code, a 9.x device).
bool paged_attention_prefill_uses_wgmma();

// ---- Mixture of experts (moe.cu) ----
// Backend::moe_mlp after the router's product: router_logits (T, E) bf16 (x router^T), then
// out (T, H) = sum over the k experts e each row picks of weight * down_e(silu(gate_e x) * up_e x),
// as cpu::moe_mlp defines it (float32 softmax; the k largest, ties to the lower expert;
// renormalised to sum 1 when `renormalize`). gate_up (E * 2I, H): expert e's gate rows, then its
// up rows, from row e * 2I; down (E * H, I): expert e's rows from e * H. H and I multiples of 8;
// x, the weights, out and workspace 16-byte aligned; E <= 1024, k <= min(E, 32). workspace: at
// least moe_workspace_bytes(T, E, k, H, I, decode) bytes (it holds the routing and the experts'
// activations, ~(T k + BM min(E, T k)) (H + I) 2 bytes, BM <= 128). Device-side routing: the
// launches depend on T only, so a CUDA graph can capture them. A row's bits do not depend on
// the other rows, nor on T unless `decode` (a pure decode step, whose products may pick
// split-K tiles for few rows per expert: other bits, as the decode GEMM plans per batch size).
// Why moe_mlp cannot take these sizes ("" when it can): E <= 1024, k <= min(E, 32), H and I
// positive multiples of 8.
std::string moe_unsupported(int E, int k, int64_t H, int64_t I);
// `tiles` forces the products' tile shapes (tests: the bits each pair below claims to share);
// kAuto picks by rows per expert, `decode` and K. kSmallWide and kSmallLong (16-row tiles whose
// warps split K the same way) give the same bits; so do kMedium and kLarge (K unsplit). kGemv:
// no tiles, a GEMV per (row, expert) pair (gemv_experts), which kAuto picks for decode steps of
// at most kMoeGemvMaxPairs pairs that are one row, or whose pairs are <= E / 4
// (NANOVLLM_MOE_GEMV=0: never); its own bits.
enum class MoeTiles { kAuto, kSmallWide, kSmallLong, kMedium, kLarge, kGemv };
constexpr int64_t kMoeGemvMaxPairs = 16;
size_t moe_workspace_bytes(int64_t T, int E, int k, int64_t H, int64_t I, bool decode,
                           MoeTiles tiles = MoeTiles::kAuto);
void moe_mlp(const void* x, const void* router_logits, const void* gate_up, const void* down, void* out, int64_t T,
             int64_t H, int64_t I, int E, int k, bool renormalize, bool decode, void* workspace,
             size_t workspace_bytes, cudaStream_t stream, MoeTiles tiles = MoeTiles::kAuto);
// The routing alone: ids (T, k) int32 and weights (T, k) float32, the j-th largest first.
void moe_route(const void* router_logits, int64_t T, int E, int k, bool renormalize, int32_t* ids, float* weights,
               cudaStream_t stream);

// Small-batch product for decode steps: out (M, N) = x (M, K) w (N, K)^T [+ bias (N,)], bf16,
// float32 sums. For M <= kGemvMaxRows, K a multiple of 8, x and w 16-byte aligned
// (gemv_supported); otherwise an Error. out rows are contiguous (stride N). k_split (1 or 4):
// how many warps share one pair of output columns, each a quarter of K (4: for short, wide
// matrices); the sums' order, and so the bits, depend on it.
constexpr int kGemvMaxRows = 8;
bool gemv_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias,
                    const void* out);
void gemv(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
          cudaStream_t stream, int k_split = 1);

// The GEMV over (row, expert) pairs (gemv.cu; moe_mlp's path for decode steps with few pairs):
// for pair p < pairs, with e = experts[p] (device memory, written by the kernel before: read
// after the PDL wait), out row p (N wide) = x row p / x_div times expert e's matrix, its w_rows
// rows from row e * w_rows of w; silu: that matrix's first N rows are the gate, the next N the
// up rows, and out = bf16(silu(bf16 g)) * bf16(u) as gemv_fused's kSiluMul. Float32 sums, one
// pair per grid row: a pair's bits do not depend on the others.
void gemv_experts(const void* x, int x_div, const void* w, int64_t w_rows, const int32_t* experts, void* out,
                  int64_t pairs, int64_t N, int64_t K, bool silu, cudaStream_t stream);

// The GEMV with the decoder's neighbouring ops folded in (gemv.cu), for M in {1, 2, 4, 8} (the
// decode ladder; gemv_fused_rows), one kernel each:
//   norm_weight non-null: x is normed on the fly, out = (rms_norm(x) * norm_weight) w^T [+ bias],
//     the 1 / rms applied to the float32 sums (the normed x is not rounded to bf16 first);
//   kAddInto: out (M, N) += bf16(x w^T [+ bias]), rounded once more (a residual update);
//   kSiluMul: w holds 2N rows (gate, then up; bias 2N), out (M, N) = bf16(silu(g)) * u, g and u
//     the rounded products, as silu_and_mul computes them.
// norm_weight null with kStore is gemv().
enum class GemvEpilogue { kStore, kAddInto, kSiluMul };
bool gemv_fused_rows(int64_t M);
void gemv_fused(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
                cudaStream_t stream, int k_split, const void* norm_weight, float eps, GemvEpilogue epi);

}  // namespace nanovllm::gpu
