// The CPU sampler, row by row:
//   1. logprobs of the raw logits (what the model believes, before any sampling setting);
//   2. banned ids to -inf; repetition penalty (transformers': divide positive logits, multiply
//      negative ones) over prompt and output; presence and frequency penalties over the output;
//   3. temperature 0: argmax (lowest id on ties);
//   4. else softmax(logits / T), keep the top-k, then the smallest top-p set, then drop what is
//      under min_p x the best probability, and pick argmax p_i / E_i with E_i = -log(u_i)
//      exponential noise (the "exponential race", a draw from the renormalised distribution
//      that needs no sort and no cumulative sum; a CUDA kernel computes the same thing).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/sampling.h"

namespace nanovllm::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void raw_logprobs(const float* row, int64_t V, int n_top, int32_t& chosen, float& chosen_lp,
                  std::vector<std::pair<int32_t, float>>* top, bool want_chosen) {
  float mx = kNegInf;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, row[i]);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(row[i]) - mx);
  const double lz = std::log(z) + mx;
  if (want_chosen) chosen_lp = static_cast<float>(row[chosen] - lz);
  if (top && n_top > 0) {
    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    const int k = static_cast<int>(std::min<int64_t>(n_top, V));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    top->clear();
    for (int i = 0; i < k; ++i) top->emplace_back(idx[i], static_cast<float>(row[idx[i]] - lz));
  }
}

void apply_penalties(std::vector<float>& l, const SamplingBatch& b, size_t r) {
  const std::vector<int32_t>* hist = b.tokens[r];
  if (!hist) return;
  const int64_t V = static_cast<int64_t>(l.size());
  const float rep = b.repetition_penalty[r], pres = b.presence_penalty[r], freq = b.frequency_penalty[r];
  if (rep != 1.f) {
    std::vector<char> seen(V, 0);
    for (int32_t t : *hist)
      if (t >= 0 && t < V && !seen[t]) {
        seen[t] = 1;
        l[t] = l[t] > 0 ? l[t] / rep : l[t] * rep;
      }
  }
  if (pres != 0.f || freq != 0.f) {
    std::unordered_map<int32_t, int> counts;
    for (size_t i = static_cast<size_t>(b.num_prompt_tokens[r]); i < hist->size(); ++i) ++counts[(*hist)[i]];
    for (const auto& [t, c] : counts)
      if (t >= 0 && t < V) l[t] -= pres + freq * static_cast<float>(c);
  }
}

int32_t argmax(const std::vector<float>& l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());  // first of ties
}

int32_t sample_row(std::vector<float>& l, const SamplingBatch& b, size_t r) {
  const int64_t V = static_cast<int64_t>(l.size());
  const float inv_t = 1.f / b.temperature[r];
  float mx = kNegInf;
  for (float& x : l) mx = std::max(mx, x *= inv_t);
  if (mx == kNegInf) return 0;  // everything banned: nothing sensible to do but not crash
  // Candidates sorted by probability when a filter needs the order.
  std::vector<int32_t> cand;
  cand.reserve(V);
  for (int64_t i = 0; i < V; ++i)
    if (l[i] != kNegInf) cand.push_back(static_cast<int32_t>(i));
  std::vector<double> p(V, 0.0);
  double z = 0;
  for (int32_t i : cand) z += (p[i] = std::exp(static_cast<double>(l[i]) - mx));
  for (int32_t i : cand) p[i] /= z;
  const int k = b.top_k[r];
  const bool need_sort = (k > 0 && k < static_cast<int>(cand.size())) || b.top_p[r] < 1.f;
  if (need_sort) {
    auto by_prob = [&](int32_t a, int32_t c) { return p[a] > p[c] || (p[a] == p[c] && a < c); };
    std::sort(cand.begin(), cand.end(), by_prob);
    if (k > 0 && k < static_cast<int>(cand.size())) cand.resize(k);
    if (b.top_p[r] < 1.f) {
      double mass = 0;
      for (int32_t i : cand) mass += p[i];
      double cum = 0;
      size_t keep = 0;
      while (keep < cand.size() && (keep == 0 || cum < b.top_p[r] * mass)) cum += p[cand[keep++]];
      cand.resize(keep);
    }
  }
  if (b.min_p[r] > 0.f) {
    double best = 0;
    for (int32_t i : cand) best = std::max(best, p[i]);
    const double floor = b.min_p[r] * best;
    cand.erase(std::remove_if(cand.begin(), cand.end(), [&](int32_t i) { return p[i] < floor; }), cand.end());
  }
  int32_t chosen = cand.front();
  double best_score = -1;
  for (int32_t i : cand) {
    const double e = -std::log(sampling_uniform(b.seed[r], b.step[r], static_cast<uint64_t>(i)));
    const double score = p[i] / e;
    if (score > best_score) best_score = score, chosen = i;
  }
  return chosen;
}

}  // namespace

SamplerOutput sample(const float* logits, int64_t R, int64_t V, const SamplingBatch& b) {
  SamplerOutput out;
  out.token.resize(R);
  out.logprob.resize(R);
  if (b.max_logprobs > 0) out.top.resize(R);
#pragma omp parallel for schedule(dynamic) if (R * V > kParallelMinWork)
  for (int64_t r = 0; r < R; ++r) {
    const float* row = logits + r * V;
    std::vector<float> l(row, row + V);
    for (int32_t t : b.banned[r])
      if (t >= 0 && t < V) l[t] = kNegInf;
    apply_penalties(l, b, r);
    int32_t tok = b.temperature[r] <= 0.f ? argmax(l) : sample_row(l, b, r);
    out.token[r] = tok;
    raw_logprobs(row, V, b.max_logprobs, tok, out.logprob[r], b.max_logprobs > 0 ? &out.top[r] : nullptr, true);
  }
  return out;
}

}  // namespace nanovllm::cpu
