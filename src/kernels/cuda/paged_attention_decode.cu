// Paged attention for decode steps — one query row per sequence — as flash-decoding.
//
//   Sequence s owns query row s of qkv and keys t < n_s = context_lens[s] (its cached prefix
//   plus the token being decoded). For query head qh = kvh g + j (g = nh / nkv):
//     x_t            = scale * q[s, qh, :] . K_s[t, kvh, :]
//     out[s, qh, :]  = sum_t softmax_t(x) V_s[t, kvh, :]
//     K_s[t] = k_cache[block_tables[s, t / bs], t % bs]          (V likewise)
//   qkv (num_seqs, (nh + 2 nkv) d) bf16, q first; k_cache, v_cache (num_blocks, bs, nkv, d)
//   bf16; context_lens (num_seqs,) int32; block_tables (num_seqs, max_blocks) int32;
//   out (num_seqs, nh d) bf16. Scores, softmax and sums in float32; out rounded once.
//   A sequence with n_s == 0 gets a zero row. A block id outside [0, num_blocks) masks its keys
//   (as the CPU reference does); n_s is clamped to max_blocks * bs, so nothing past the table
//   is read.
//
// Work split (flash-decoding). Pass 1: one CTA per (split, kv head, up to 8 of its query heads,
// sequence). The CTA reads each K/V row of its key range once for all its query heads
// (grouped-query aware), keeps a running max m and sum l per head (online softmax over tiles of
// TK keys) and writes either the finished row (one split) or (o = acc / l, m, l) to the
// workspace. Pass 2, only when there are several splits: out = sum_i w_i o_i / sum_i w_i with
// w_i = l_i 2^(m_i - max m). The number of splits S is fixed on the host from (num_seqs,
// nkv, max_context_len) so the grid is the same for every replay of a captured graph; each
// sequence cuts its own n_s into at most S ranges of a multiple of 128 keys, so short
// sequences use few splits and a long one fills the grid. Scores are kept in base 2 (q is
// pre-multiplied by scale log2 e) so every exponential is one exp2.
//
// Inside a CTA (128 threads, 4 warps) a K/V row of d bf16 is L = d / 8 lanes x 16 bytes; a warp
// covers 32 / L rows per load and each lane keeps U = 8 K and 8 V loads in flight per tile.
// The G per-head dot products of a lane are summed over its L lanes by a halving exchange
// (G - 1 + log2(L / G) shuffles instead of G log2 L). Bytes: each K/V element once per KV head
// group, 4 n d nkv per sequence, plus q, out and the workspace (S (d + 2) floats per head).
#include <cmath>

#include "kernels/cuda/bf16_vec.cuh"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"

namespace nanovllm::gpu {
namespace {

using detail::bf16;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kLoadsInFlight = 8;   // U: K (and V) rows each lane loads per tile
constexpr int kTargetCtas = 1024;   // about two waves of pass 1 on an H100/H200
constexpr int kSplitAlign = 128;    // a split covers a multiple of this many keys (>= one tile)
constexpr int kMaxSplits = 128;
constexpr int kMaxHeadsPerCta = 8;  // G: query heads sharing a CTA's K/V reads

struct DecodeParams {
  const bf16* qkv;             // (num_seqs, (nh + 2 nkv) d)
  const bf16* k_cache;         // (num_blocks, bs, nkv, d)
  const bf16* v_cache;         // (num_blocks, bs, nkv, d)
  const int32_t* context_lens; // (num_seqs,)
  const int32_t* block_tables; // (num_seqs, max_blocks)
  bf16* out;                   // (num_seqs, nh d)
  float* ws_o;                 // (num_seqs, nh, S, d)   only when S > 1
  float* ws_ml;                // (num_seqs, nh, S, 2)   only when S > 1
  int64_t qkv_stride;          // (nh + 2 nkv) d
  int64_t num_blocks;
  int nh, nkv, group, head_chunks;
  int block_size, block_shift;  // block_shift = log2(bs) when bs is a power of two, else -1
  int max_blocks, num_splits;
  float scale_log2;             // scale * log2(e)
};

__device__ __forceinline__ int context_of(const DecodeParams& p, int s) {
  const int64_t n = p.context_lens[s];
  const int64_t cap = int64_t{p.max_blocks} * p.block_size;
  return static_cast<int>(n < 0 ? 0 : (n > cap ? cap : n));
}

// Keys per split for a sequence of n keys cut into at most S pieces.
__device__ __forceinline__ int split_len(int n, int S) {
  int len = (n + S - 1) / S;
  len = len < kSplitAlign ? kSplitAlign : len;
  return (len + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
}
__device__ __forceinline__ int active_splits(int n, int len) { return n > 0 ? (n + len - 1) / len : 1; }

__device__ __forceinline__ void bf16x8_to_float(const uint4& u, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

// v[h] holds this lane's part of head h's dot product; the L lanes of an aligned group (c =
// lane % L) hold the parts of the same key. Returns the full dot product of head c / (L / G).
// Each halving step keeps half the heads (the upper half on lanes whose bit o is set) and
// adds the partner's copy of them; the last log2(L / G) steps are a plain sum.
template <int G, int L>
__device__ __forceinline__ float reduce_heads(float (&v)[G], int c) {
#pragma unroll
  for (int n = G, o = L / 2; n > 1; n /= 2, o /= 2) {
    const bool upper = (c & o) != 0;
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const float send = upper ? v[i] : v[i + n / 2];
      const float keep = upper ? v[i + n / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
    }
  }
  float r = v[0];
#pragma unroll
  for (int o = L / (2 * G); o >= 1; o /= 2) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(const DecodeParams p) {
  constexpr int L = D / 8;                   // lanes per K/V row
  constexpr int KPW = 32 / L;                // rows per warp load
  constexpr int U = kLoadsInFlight;
  constexpr int TK = kWarps * KPW * U;       // keys per tile: 128, 64, 32 for d = 64, 128, 256
  constexpr int HPL = L / G;                 // lanes that end up with the same head's score
  static_assert(G <= L && TK % 32 == 0 && kSplitAlign % TK == 0, "tile shape");

  __shared__ float s_p[G][TK];               // scores, then probabilities, of the tile
  __shared__ float s_alpha[G];               // this tile's rescale of the running sums
  __shared__ float s_ml[G][2];               // final (m, l) per head
  __shared__ __align__(16) float s_red[kWarps][G][D];

  const int seq = blockIdx.z;
  const int kvh = blockIdx.y / p.head_chunks;
  const int h0 = (blockIdx.y % p.head_chunks) * G;
  const int nheads = min(G, p.group - h0);
  const int n = context_of(p, seq);
  const int len = split_len(n, p.num_splits);
  const int split = blockIdx.x;
  if (split >= active_splits(n, len)) return;  // whole CTA: uniform
  const int k_begin = split * len;
  const int k_end = min(n, k_begin + len);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / L, c = lane % L;

  // This lane's 8 columns of each query head, in base-2 score units.
  float q[G][8];
  const bf16* q_row = p.qkv + seq * p.qkv_stride + int64_t{kvh * p.group + h0} * D + c * 8;
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (h < nheads) {
      bf16x8_to_float(__ldg(reinterpret_cast<const uint4*>(q_row + h * D)), q[h]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] *= p.scale_log2;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] = 0.f;
    }
  }

  float acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};  // heads warp, warp + 4

  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks;
  const int64_t kv_row = int64_t{p.nkv} * D;
  const int64_t col = int64_t{kvh} * D + c * 8;

  for (int kt = k_begin; kt < k_end; kt += TK) {
    // Issue all of this tile's K and V loads before using any.
    uint4 kp[U], vp[U];
    bool valid[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int key = kt + (warp * U + u) * KPW + sub;
      valid[u] = key < k_end;
      int64_t off = 0;
      if (valid[u]) {
        const int bi = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
        const int32_t blk = table[bi];
        valid[u] = blk >= 0 && blk < p.num_blocks;
        off = (int64_t{blk} * p.block_size + (key - bi * p.block_size)) * kv_row + col;
      }
      if (valid[u]) {
        kp[u] = __ldg(reinterpret_cast<const uint4*>(p.k_cache + off));
        vp[u] = __ldg(reinterpret_cast<const uint4*>(p.v_cache + off));
      } else {
        kp[u] = make_uint4(0, 0, 0, 0);  // zeros: p = 0 must not meet a NaN
        vp[u] = make_uint4(0, 0, 0, 0);
      }
    }
    // Scores.
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float k[8];
      bf16x8_to_float(kp[u], k);
      float dot[G];
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float s = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(q[h][e], k[e], s);
        dot[h] = s;
      }
      const float score = reduce_heads<G, L>(dot, c);
      if (c % HPL == 0) s_p[c / HPL][(warp * U + u) * KPW + sub] = valid[u] ? score : -INFINITY;
    }
    __syncthreads();
    // Online softmax over the tile: warp w owns heads w and w + 4.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int h = warp + r * kWarps;
      if (h < G) {
        constexpr int PER = TK / 32;
        float x[PER], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
          x[i] = s_p[h][lane + 32 * i];
          mx = fmaxf(mx, x[i]);
        }
#pragma unroll
        for (int o = 16; o >= 1; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float m_new = fmaxf(m_run[r], mx);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;  // all masked so far: p = 0, no NaN
        const float alpha = exp2f(m_run[r] - m_use);
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
          const float e = exp2f(x[i] - m_use);
          s_p[h][lane + 32 * i] = e;
          sum += e;
        }
#pragma unroll
        for (int o = 16; o >= 1; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        l_run[r] = l_run[r] * alpha + sum;
        m_run[r] = m_new;
        if (lane == 0) s_alpha[h] = alpha;
      }
    }
    __syncthreads();
    // acc = alpha acc + sum over this lane's keys of p v.
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float a = s_alpha[h];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= a;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float v[8];
      bf16x8_to_float(vp[u], v);
      const int kl = (warp * U + u) * KPW + sub;
#pragma unroll
      for (int h = 0; h < G; ++h) {
        const float pr = s_p[h][kl];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(pr, v[e], acc[h][e]);
      }
    }
    __syncthreads();  // s_p and s_alpha are rewritten by the next tile
  }

  // Sum acc over the lane groups of a warp, then over the warps through shared memory.
#pragma unroll
  for (int o = L; o < 32; o *= 2)
#pragma unroll
    for (int h = 0; h < G; ++h)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] += __shfl_xor_sync(0xffffffffu, acc[h][e], o);
  if (sub == 0) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float4* dst = reinterpret_cast<float4*>(&s_red[warp][h][c * 8]);
      dst[0] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
      dst[1] = make_float4(acc[h][4], acc[h][5], acc[h][6], acc[h][7]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int h = warp + r * kWarps;
    if (h < G && lane == 0) {
      s_ml[h][0] = m_run[r];
      s_ml[h][1] = l_run[r];
    }
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < G * L; idx += kThreads) {
    const int h = idx / L, c8 = idx % L;
    if (h >= nheads) continue;
    float o[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] += s_red[w][h][c8 * 8 + e];
    const float l = s_ml[h][1];
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] *= inv;
    const int qh = kvh * p.group + h0 + h;
    if (p.num_splits == 1) {
      detail::store_bf16<8>(p.out + (int64_t{seq} * p.nh + qh) * D + c8 * 8, o);
    } else {
      const int64_t slot = (int64_t{seq} * p.nh + qh) * p.num_splits + split;
      float4* dst = reinterpret_cast<float4*>(p.ws_o + slot * D + c8 * 8);
      dst[0] = make_float4(o[0], o[1], o[2], o[3]);
      dst[1] = make_float4(o[4], o[5], o[6], o[7]);
      if (c8 == 0) {
        p.ws_ml[slot * 2] = s_ml[h][0];
        p.ws_ml[slot * 2 + 1] = l;
      }
    }
  }
}

// Pass 2: blockDim (D / 4, 128 / (D / 4)); thread x owns 4 columns of query head
// blockIdx.x * blockDim.y + y of sequence blockIdx.y.
template <int D>
__global__ void __launch_bounds__(kThreads) decode_combine_kernel(const DecodeParams p) {
  const int seq = blockIdx.y;
  const int qh = blockIdx.x * blockDim.y + threadIdx.y;
  if (qh >= p.nh) return;
  const int n = context_of(p, seq);
  const int splits = active_splits(n, split_len(n, p.num_splits));
  const int64_t base = (int64_t{seq} * p.nh + qh) * p.num_splits;
  float mx = -INFINITY;
  for (int i = 0; i < splits; ++i) mx = fmaxf(mx, p.ws_ml[(base + i) * 2]);
  float total = 0.f, o[4] = {0.f, 0.f, 0.f, 0.f};
  for (int i = 0; i < splits; ++i) {
    const float m = p.ws_ml[(base + i) * 2], l = p.ws_ml[(base + i) * 2 + 1];
    const float w = l > 0.f ? l * exp2f(m - mx) : 0.f;  // l > 0 implies m and mx finite
    total += w;
    const float4 v = *reinterpret_cast<const float4*>(p.ws_o + (base + i) * D + threadIdx.x * 4);
    o[0] = fmaf(w, v.x, o[0]);
    o[1] = fmaf(w, v.y, o[1]);
    o[2] = fmaf(w, v.z, o[2]);
    o[3] = fmaf(w, v.w, o[3]);
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
#pragma unroll
  for (int e = 0; e < 4; ++e) o[e] *= inv;
  detail::store_bf16<4>(p.out + (int64_t{seq} * p.nh + qh) * D + threadIdx.x * 4, o);
}

int heads_per_cta(int group) {
  int g = 1;
  while (g < group && g < kMaxHeadsPerCta) g *= 2;
  return g;
}

int num_splits(int64_t num_seqs, int ctas_per_seq, int64_t max_context_len) {
  const int64_t base = std::max<int64_t>(1, num_seqs * ctas_per_seq);
  int64_t s = (kTargetCtas + base - 1) / base;
  s = std::min<int64_t>(s, (max_context_len + kSplitAlign - 1) / kSplitAlign);
  s = std::min<int64_t>(s, kMaxSplits);
  return static_cast<int>(std::max<int64_t>(s, 1));
}

void check_shape(const char* op, int num_seqs, int nh, int nkv, int d, int max_context_len) {
  using detail::require;
  require(num_seqs >= 0 && num_seqs <= 65535, op,
          "num_seqs must be in [0, 65535], got " + std::to_string(num_seqs));
  require(nh > 0 && nkv > 0 && nh % nkv == 0, op,
          "need nh, nkv > 0 with nh a multiple of nkv; got nh=" + std::to_string(nh) +
              " nkv=" + std::to_string(nkv));
  require(d == 64 || d == 128 || d == 256, op, "head_dim must be 64, 128 or 256, got " + std::to_string(d));
  require(max_context_len >= 0, op, "max_context_len must be non-negative");
}

template <int D, int G>
void launch_split(const DecodeParams& p, int num_seqs, cudaStream_t stream) {
  const dim3 grid(p.num_splits, p.nkv * p.head_chunks, num_seqs);
  decode_split_kernel<D, G><<<grid, kThreads, 0, stream>>>(p);
}

template <int D>
void launch(const DecodeParams& p, int G, int num_seqs, cudaStream_t stream) {
  switch (G) {
    case 1: launch_split<D, 1>(p, num_seqs, stream); break;
    case 2: launch_split<D, 2>(p, num_seqs, stream); break;
    case 4: launch_split<D, 4>(p, num_seqs, stream); break;
    default: launch_split<D, 8>(p, num_seqs, stream); break;
  }
  NANOVLLM_CUDA_CHECK_LAUNCH();
  if (p.num_splits > 1) {
    const dim3 block(D / 4, kThreads / (D / 4));
    const dim3 grid((p.nh + block.y - 1) / block.y, num_seqs);
    decode_combine_kernel<D><<<grid, block, 0, stream>>>(p);
    NANOVLLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

size_t paged_attention_decode_workspace_bytes(int max_num_seqs, int nh, int nkv, int d,
                                              int max_context_len) {
  check_shape("paged_attention_decode_workspace_bytes", max_num_seqs, nh, nkv, d, max_context_len);
  const int G = heads_per_cta(nh / nkv);
  const int ctas_per_seq = nkv * ((nh / nkv + G - 1) / G);
  int64_t most = 0;  // the largest num_seqs * splits over every batch size up to the maximum
  for (int n = 1; n <= max_num_seqs; ++n) {
    const int s = num_splits(n, ctas_per_seq, max_context_len);
    if (s > 1) most = std::max<int64_t>(most, int64_t{n} * s);
  }
  return static_cast<size_t>(most) * nh * (d + 2) * sizeof(float);
}

void paged_attention_decode(const void* qkv, int nh, int nkv, int d, float scale,
                            const void* k_cache, const void* v_cache, int block_size,
                            int64_t num_blocks, int num_seqs, const int32_t* context_lens,
                            const int32_t* block_tables, int max_blocks_per_seq,
                            int max_context_len, void* out, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "paged_attention_decode";
  using detail::require;
  check_shape(op, num_seqs, nh, nkv, d, max_context_len);
  require(block_size >= 1, op, "block_size must be positive, got " + std::to_string(block_size));
  require(num_blocks >= 0, op, "num_blocks must be non-negative");
  require(max_blocks_per_seq >= 1, op, "max_blocks_per_seq must be positive");
  require(int64_t{max_blocks_per_seq} * block_size <= INT32_MAX, op,
          "max_blocks_per_seq * block_size must fit in int32");
  require(std::isfinite(scale), op, "scale must be finite");
  if (num_seqs == 0) return;
  require(qkv && k_cache && v_cache && context_lens && block_tables && out, op, "null pointer");
  require(detail::aligned16(qkv) && detail::aligned16(k_cache) && detail::aligned16(v_cache) &&
              detail::aligned16(out),
          op, "qkv, k_cache, v_cache and out must be 16-byte aligned");

  const int G = heads_per_cta(nh / nkv);
  DecodeParams p{};
  p.qkv = static_cast<const bf16*>(qkv);
  p.k_cache = static_cast<const bf16*>(k_cache);
  p.v_cache = static_cast<const bf16*>(v_cache);
  p.context_lens = context_lens;
  p.block_tables = block_tables;
  p.out = static_cast<bf16*>(out);
  p.qkv_stride = int64_t{nh + 2 * nkv} * d;
  p.num_blocks = num_blocks;
  p.nh = nh;
  p.nkv = nkv;
  p.group = nh / nkv;
  p.head_chunks = (p.group + G - 1) / G;
  p.block_size = block_size;
  p.block_shift = -1;
  if ((block_size & (block_size - 1)) == 0)
    for (p.block_shift = 0; (1 << p.block_shift) < block_size; ++p.block_shift) {
    }
  p.max_blocks = max_blocks_per_seq;
  p.num_splits = num_splits(num_seqs, nkv * p.head_chunks, max_context_len);
  p.scale_log2 = scale * 1.4426950408889634f;
  require(int64_t{nkv} * p.head_chunks <= 65535, op, "too many KV heads");
  if (p.num_splits > 1) {
    const size_t need = size_t(num_seqs) * nh * p.num_splits * (d + 2) * sizeof(float);
    require(workspace && workspace_bytes >= need, op,
            "workspace of " + std::to_string(workspace_bytes) + " bytes is too small: this call needs " +
                std::to_string(need) + " (see paged_attention_decode_workspace_bytes)");
    require(detail::aligned16(workspace), op, "workspace must be 16-byte aligned");
    p.ws_o = static_cast<float*>(workspace);
    p.ws_ml = p.ws_o + int64_t{num_seqs} * nh * p.num_splits * d;
  }
  switch (d) {
    case 64: launch<64>(p, G, num_seqs, stream); break;
    case 128: launch<128>(p, G, num_seqs, stream); break;
    default: launch<256>(p, G, num_seqs, stream); break;
  }
}

}  // namespace nanovllm::gpu
