// Writing K/V into the paged cache, and causal grouped-query attention that reads K/V back
// through each sequence's block table. Softmax is exact (max-subtracted, double sums): this is
// the reference the CUDA flash kernels are checked against.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {

void store_kv(const float* qkv, int64_t T, int nh, int nkv, int d, float* k_cache,
              float* v_cache, int64_t num_slots, const int32_t* slot_mapping) {
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * d;
  const int64_t kv_width = static_cast<int64_t>(nkv) * d;
#pragma omp parallel for schedule(static) if (T * kv_width > kParallelMinWork)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0 || slot >= num_slots) continue;  // -1: this token's K/V is not stored
    const float* k = qkv + t * row + static_cast<int64_t>(nh) * d;
    std::memcpy(k_cache + slot * kv_width, k, sizeof(float) * kv_width);
    std::memcpy(v_cache + slot * kv_width, k + kv_width, sizeof(float) * kv_width);
  }
}

void paged_attention(const float* qkv, int nh, int nkv, int d, float scale,
                     const float* k_cache, const float* v_cache, int block_size,
                     int64_t num_blocks, int num_seqs, const int32_t* cu_seqlens_q,
                     const int32_t* context_lens, const int32_t* block_tables,
                     int max_blocks_per_seq, float* out) {
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * d;
  const int64_t kv_width = static_cast<int64_t>(nkv) * d;
  const int group = nh / nkv;
  // One work item per (sequence, query head): independent, so both cores split them.
#pragma omp parallel if (int64_t{cu_seqlens_q[num_seqs]} * nh * d * 16 > kParallelMinWork)
  {
    std::vector<double> scores;
    std::vector<double> acc(d);
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < static_cast<int64_t>(num_seqs) * nh; ++item) {
      const int s = static_cast<int>(item / nh), h = static_cast<int>(item % nh);
      const int kvh = h / group;
      const int q_begin = cu_seqlens_q[s], q_len = cu_seqlens_q[s + 1] - q_begin;
      const int ctx = context_lens[s];
      const int32_t* table = block_tables + static_cast<int64_t>(s) * max_blocks_per_seq;
      for (int i = 0; i < q_len; ++i) {
        const float* q = qkv + (q_begin + i) * row + static_cast<int64_t>(h) * d;
        float* o = out + (q_begin + i) * static_cast<int64_t>(nh) * d + static_cast<int64_t>(h) * d;
        const int visible = ctx - q_len + i + 1;  // causal: keys at positions <= this query's
        scores.assign(visible > 0 ? visible : 0, 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < visible; ++j) {
          const int32_t block = table[j / block_size];
          if (block < 0 || block >= num_blocks) { scores[j] = -INFINITY; continue; }
          const float* k = k_cache + (static_cast<int64_t>(block) * block_size + j % block_size) * kv_width +
                           static_cast<int64_t>(kvh) * d;
          double dot = 0.0;
          for (int c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * k[c];
          scores[j] = dot * scale;
          if (scores[j] > mx) mx = scores[j];
        }
        double denom = 0.0;
        for (int j = 0; j < visible; ++j) denom += (scores[j] = std::exp(scores[j] - mx));
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < visible; ++j) {
          const int32_t block = table[j / block_size];
          if (block < 0 || block >= num_blocks) continue;
          const float* v = v_cache + (static_cast<int64_t>(block) * block_size + j % block_size) * kv_width +
                           static_cast<int64_t>(kvh) * d;
          for (int c = 0; c < d; ++c) acc[c] += scores[j] * v[c];
        }
        for (int c = 0; c < d; ++c) o[c] = visible > 0 ? static_cast<float>(acc[c] / denom) : 0.f;
      }
    }
  }
}

}  // namespace nanovllm::cpu
