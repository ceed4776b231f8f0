// The mixture-of-experts MLP on the CPU (Backend::moe_mlp): route every row, then run each expert
// once over the rows that chose it (a gather, two products and SiLU, a weighted scatter-add),
// so the products stay matrix products instead of one small one per (row, expert).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace nanovllm::cpu {

void moe_route(const float* router_logits, int64_t T, int E, int k, bool renormalize, int32_t* ids,
               float* weights) {
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<int> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = router_logits + t * E;
    const float mx = *std::max_element(l, l + E);
    float z = 0.f;
    for (int e = 0; e < E; ++e) z += (p[e] = std::exp(l[e] - mx));
    for (int e = 0; e < E; ++e) p[e] /= z;
    std::iota(order.begin(), order.end(), 0);
    // The k largest, larger first; ties to the lower expert (stable on the index order).
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    float sum = 0.f;
    for (int j = 0; j < k; ++j) sum += p[order[j]];
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = order[j];
      weights[t * k + j] = renormalize ? p[order[j]] / sum : p[order[j]];
    }
  }
}

void moe_mlp(const float* x, const float* router, const float* gate_up, const float* down, float* out, int64_t T,
             int64_t H, int64_t I, int E, int k, bool renormalize) {
  std::vector<float> logits(static_cast<size_t>(T * E)), w(static_cast<size_t>(T * k));
  std::vector<int32_t> ids(static_cast<size_t>(T * k));
  linear(x, router, nullptr, logits.data(), T, E, H);
  moe_route(logits.data(), T, E, k, renormalize, ids.data(), w.data());
  std::fill(out, out + T * H, 0.f);
  // (row, weight) of each expert's rows, rows increasing: one pass over the choices.
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) by_expert[ids[t * k + j]].emplace_back(t, w[t * k + j]);
  std::vector<float> xs, gu, act, y;
  for (int e = 0; e < E; ++e) {
    const auto& rows = by_expert[e];
    if (rows.empty()) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    xs.resize(static_cast<size_t>(n * H));
    for (int64_t r = 0; r < n; ++r) std::copy_n(x + rows[r].first * H, H, xs.data() + r * H);
    gu.resize(static_cast<size_t>(n * 2 * I));
    act.resize(static_cast<size_t>(n * I));
    y.resize(static_cast<size_t>(n * H));
    linear(xs.data(), gate_up + e * 2 * I * H, nullptr, gu.data(), n, 2 * I, H);
    silu_and_mul(gu.data(), act.data(), n, I);
    linear(act.data(), down + e * H * I, nullptr, y.data(), n, H, I);
    for (int64_t r = 0; r < n; ++r) {
      float* o = out + rows[r].first * H;
      const float* yr = y.data() + r * H;
      for (int64_t h = 0; h < H; ++h) o[h] += rows[r].second * yr[h];
    }
  }
}

}  // namespace nanovllm::cpu
