// The GPU sampler (kernels/cuda/gpu_sampler.h over kernels/cuda/sampler.h) against the CPU
// sampler (cpu::sample), on the same bf16-rounded logits.
//
// - Fresh random logits on every run (the seed is printed): peaked, flat, integer-valued (many
//   ties), constant and wide rows; V in {512, 1000, 32000, 151936, 262144}, R in {1, 7, 64,
//   300}; every row with its own mix of settings (greedy, temperature, top-k small / large / past
//   V, top-p, min-p, penalties over histories, bans, logprobs 0 / 1 / 5 / 20).
// - Greedy tokens and top-N ids are equal exactly (both are exact orders of the same floats).
//   Sampled tokens equal the CPU's on >= 99% of rows (the CPU computes probabilities in double,
//   the GPU in float: a near-tie may go either way; the count is printed), and every GPU token is
//   one the filters allow, recomputed on the host with a relative slack of 1e-4.
//   Logprobs within 1e-3 of the host's double log_softmax.
// - The split path (greedy / temperature-only rows over several blocks) samples the same tokens
//   as the one-block path, bit for bit, on shapes around its chunk size, V < chunk, V = 1,
//   misaligned rows, constant rows and rows with -inf logits.
// - A row's token does not depend on its batch; the draws follow softmax (chi-square); the
//   launcher writes every output element (poisoned first) and nothing around them.
// - An informational timing (never asserted) for R = 1, 8, 256: greedy, temperature, top-k +
//   top-p, and more at R = 256. Without a GPU every test but the argument checks
//   reports SKIPPED.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/gpu_sampler.h"
#include "kernels/cuda/sampler.h"
#include "runtime/cuda_check.h"
#include "gpu_test_util.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::mt19937_64& rng() {
  static std::mt19937_64 gen = [] {
    const uint64_t seed = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
    std::printf("[ CudaSampler ] random seed %llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return gen;
}
template <typename T>
T pick(std::initializer_list<T> xs) {
  return *(xs.begin() + std::uniform_int_distribution<size_t>(0, xs.size() - 1)(rng()));
}
bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng()) < p; }

// Device memory that frees itself.
class DeviceMem {
 public:
  explicit DeviceMem(size_t bytes) { NANOVLLM_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 16))); }
  ~DeviceMem() { cudaFree(p_); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  void* get() const { return p_; }
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }

 private:
  void* p_ = nullptr;
};

template <typename T>
void upload(void* dst, const std::vector<T>& v) {
  NANOVLLM_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}

// ---- Random logits (R, V): the bf16 bits for the device, the same values as float for the CPU.
struct Logits {
  int64_t R = 0, V = 0;
  std::vector<uint16_t> bits;
  std::vector<float> f;
  const float* row(int64_t r) const { return f.data() + r * V; }
};

void fill_row(Logits& L, int64_t r, int style) {
  std::normal_distribution<float> normal(0.f, 1.f);
  float* f = L.f.data() + r * L.V;
  const float sigma = pick({1.f, 2.f, 3.f});
  for (int64_t i = 0; i < L.V; ++i) {
    switch (style) {
      case 0: f[i] = sigma * normal(rng()); break;                         // peaked: spikes below
      case 1: f[i] = 0.3f * normal(rng()); break;                          // flat: large top-p sets
      case 2: f[i] = std::round(4.f * normal(rng())); break;               // integers: many ties
      case 3: f[i] = 1.5f; break;                                          // constant: all ties
      case 5: f[i] = 0.7f * normal(rng()); break;                          // gentle
      default: f[i] = 8.f * normal(rng()) - 20.f; break;                   // wide, negative
    }
  }
  if (style == 0) {
    const int spikes = pick({1, 3, 10, 40});
    std::uniform_int_distribution<int64_t> id(0, L.V - 1);
    for (int s = 0; s < spikes; ++s) f[id(rng())] += std::uniform_real_distribution<float>(4.f, 16.f)(rng());
  }
  for (int64_t i = 0; i < L.V; ++i) {
    L.bits[r * L.V + i] = f32_to_bf16(f[i]);
    f[i] = bf16_to_f32(L.bits[r * L.V + i]);
  }
}

Logits random_logits(int64_t R, int64_t V) {
  Logits L{R, V, std::vector<uint16_t>(size_t(R * V)), std::vector<float>(size_t(R * V))};
  for (int64_t r = 0; r < R; ++r) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng());
    fill_row(L, r, u < 0.5 ? 0 : u < 0.72 ? 1 : u < 0.85 ? 2 : u < 0.9 ? 3 : 4);
  }
  return L;
}

// ---- A batch whose history vectors it owns.
struct Batch {
  SamplingBatch b;
  std::vector<std::vector<int32_t>> hist;
  void resize(size_t R) {
    b.temperature.resize(R);
    b.top_k.resize(R);
    b.top_p.resize(R);
    b.min_p.resize(R);
    b.repetition_penalty.resize(R);
    b.presence_penalty.resize(R);
    b.frequency_penalty.resize(R);
    b.seed.resize(R);
    b.step.resize(R);
    b.tokens.resize(R);
    b.num_prompt_tokens.resize(R);
    b.banned.resize(R);
    hist.resize(R);
  }
  void link() {  // b.tokens point into hist (after hist stops moving)
    for (size_t r = 0; r < hist.size(); ++r)
      if (b.tokens[r]) b.tokens[r] = &hist[r];
  }
  int64_t history_tokens() const {
    int64_t n = 0;
    for (const auto& h : hist) n += static_cast<int64_t>(h.size());
    return n;
  }
  int64_t banned_tokens() const {
    int64_t n = 0;
    for (const auto& v : b.banned) n += static_cast<int64_t>(v.size());
    return n;
  }
};

// The ids of the row's `n` largest logits (penalty histories and bans that matter).
std::vector<int32_t> top_ids(const float* row, int64_t V, int n) {
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  n = static_cast<int>(std::min<int64_t>(n, V));
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  idx.resize(size_t(n));
  return idx;
}

// Row r gets a random mix of settings.
void random_settings(Batch& B, size_t r, const float* row, int64_t V) {
  SamplingBatch& b = B.b;
  const int32_t Vi = static_cast<int32_t>(V);
  b.temperature[r] = chance(0.2) ? 0.f : pick({0.3f, 0.7f, 1.f, 1.5f});
  b.top_k[r] = chance(0.4) ? pick({-1, 0}) : pick({1, 2, 5, 20, 50, 200, 1000, 5000, 20000, Vi, Vi + 7});
  b.top_p[r] = chance(0.5) ? 1.f : pick({0.05f, 0.1f, 0.3f, 0.5f, 0.8f, 0.9f, 0.95f, 0.99f});
  b.min_p[r] = chance(0.7) ? 0.f : pick({0.01f, 0.05f, 0.1f, 0.5f, 1.f});
  b.seed[r] = rng()();
  b.step[r] = std::uniform_int_distribution<uint64_t>(0, 5000)(rng());
  b.repetition_penalty[r] = 1.f;
  b.presence_penalty[r] = 0.f;
  b.frequency_penalty[r] = 0.f;
  b.tokens[r] = &B.hist[r];  // the engine always sets it; the penalties decide
  B.hist[r].clear();
  b.num_prompt_tokens[r] = 0;
  b.banned[r].clear();
  const std::vector<int32_t> best = top_ids(row, V, 50);
  std::uniform_int_distribution<int32_t> any(0, Vi - 1);
  std::uniform_int_distribution<size_t> some(0, best.size() - 1);
  if (chance(0.4)) {
    b.repetition_penalty[r] = pick({1.f, 1.1f, 1.3f, 0.8f});
    b.presence_penalty[r] = pick({0.f, 0.5f, -0.5f, 1.5f});
    b.frequency_penalty[r] = pick({0.f, 0.3f, -0.2f, 1.f});
    const int prompt = std::uniform_int_distribution<int>(0, 200)(rng());
    const int output = std::uniform_int_distribution<int>(0, 100)(rng());
    for (int i = 0; i < prompt + output; ++i)
      B.hist[r].push_back(chance(0.5) ? best[some(rng())] : (chance(0.02) ? pick({-1, Vi + 3}) : any(rng())));
    b.num_prompt_tokens[r] = prompt;
  }
  if (chance(0.2)) {
    const int n = std::uniform_int_distribution<int>(1, 5)(rng());
    for (int i = 0; i < n; ++i) b.banned[r].push_back(chance(0.5) ? best[some(rng())] : any(rng()));
    if (chance(0.3)) b.banned[r].push_back(best[0]);
  } else if (V <= 32000 && chance(0.01)) {  // everything but a few, or everything
    const bool all = chance(0.3);
    for (int32_t i = 0; i < Vi; ++i)
      if (all || i % 997 != 5) b.banned[r].push_back(i);
  }
}

Batch random_batch(const Logits& L) {
  Batch B;
  B.resize(size_t(L.R));
  for (int64_t r = 0; r < L.R; ++r) random_settings(B, size_t(r), L.row(r), L.V);
  B.b.max_logprobs = pick({0, 1, 5, 20});
  B.link();
  return B;
}

// ---- Host references (double).
// The logits after bans and penalties, as cpu::sample makes them (same float operations).
std::vector<float> adjusted(const float* row, int64_t V, const SamplingBatch& b, size_t r) {
  std::vector<float> l(row, row + V);
  for (int32_t t : b.banned[r])
    if (t >= 0 && t < V) l[size_t(t)] = kNegInf;
  const std::vector<int32_t>* h = b.tokens[r];
  if (!h) return l;
  const float rep = b.repetition_penalty[r], pres = b.presence_penalty[r], freq = b.frequency_penalty[r];
  if (rep != 1.f) {
    std::vector<char> seen(size_t(V), 0);
    for (int32_t t : *h)
      if (t >= 0 && t < V && !seen[size_t(t)]) {
        seen[size_t(t)] = 1;
        l[size_t(t)] = l[size_t(t)] > 0 ? l[size_t(t)] / rep : l[size_t(t)] * rep;
      }
  }
  if (pres != 0.f || freq != 0.f) {
    std::vector<int> counts(size_t(V), 0);
    for (size_t i = size_t(b.num_prompt_tokens[r]); i < h->size(); ++i)
      if ((*h)[i] >= 0 && (*h)[i] < V) ++counts[size_t((*h)[i])];
    for (int64_t t = 0; t < V; ++t)
      if (counts[size_t(t)]) l[size_t(t)] -= pres + freq * static_cast<float>(counts[size_t(t)]);
  }
  return l;
}

double log_z(const float* row, int64_t V) {
  const float mx = *std::max_element(row, row + V);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(double(row[i]) - mx);
  return std::log(z) + mx;
}

// Whether the filters let token t through (relative slack 1e-4 at the top-p and min-p edges).
// Returns "" if allowed, else why not.
std::string why_not_allowed(const float* row, int64_t V, const SamplingBatch& b, size_t r, int32_t t) {
  if (t < 0 || t >= V) return "out of range";
  std::vector<float> l = adjusted(row, V, b, r);
  const float inv_t = 1.f / b.temperature[r];
  float mx = kNegInf;
  int64_t finite = 0;
  for (float& x : l) {
    mx = std::max(mx, x *= inv_t);
    finite += x != kNegInf;
  }
  if (mx == kNegInf) return t == 0 ? "" : "everything is banned, expected 0";
  if (l[size_t(t)] == kNegInf) return "banned (logit -inf)";
  auto before = [&](int64_t i) { return l[size_t(i)] > l[size_t(t)] || (l[size_t(i)] == l[size_t(t)] && i < t); };
  int64_t rank = 0;
  for (int64_t i = 0; i < V; ++i) rank += before(i);
  const int k = b.top_k[r];
  const bool k_on = k > 0 && k < finite;
  if (k_on && rank >= k) return "outside the top-k (rank " + std::to_string(rank) + ")";
  std::vector<double> p(size_t(V), 0.0);
  for (int64_t i = 0; i < V; ++i)
    if (l[size_t(i)] != kNegInf) p[size_t(i)] = std::exp(double(l[size_t(i)]) - mx);
  if (b.top_p[r] < 1.f && rank > 0) {
    double mass = 0, cum = 0;
    if (k_on) {  // the mass of the top-k set: everything up to its k-th element
      std::vector<int32_t> idx(static_cast<size_t>(V));
      std::iota(idx.begin(), idx.end(), 0);
      auto order = [&](int32_t a, int32_t c) { return l[size_t(a)] > l[size_t(c)] || (l[size_t(a)] == l[size_t(c)] && a < c); };
      std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), order);
      const int32_t kth = idx[size_t(k - 1)];
      for (int32_t i = 0; i < V; ++i)
        if (!order(kth, i)) mass += p[size_t(i)];
    } else {
      for (double q : p) mass += q;
    }
    for (int64_t i = 0; i < V; ++i)
      if (before(i)) cum += p[size_t(i)];
    if (!(cum < double(b.top_p[r]) * mass * (1 + 1e-4)))
      return "outside the top-p set (mass before it " + std::to_string(cum / mass) + ")";
  }
  if (b.min_p[r] > 0.f && p[size_t(t)] < double(b.min_p[r]) * (1 - 1e-4)) return "under min-p";
  return "";
}

// ---- Comparison of one batch, accumulated over a test.
struct Tally {
  int64_t greedy = 0, sampled = 0, mismatched = 0, cases = 0;
  double max_lp_err = 0;
  ~Tally() {
    std::printf("[ CudaSampler ] %lld cases: %lld greedy rows equal, %lld of %lld sampled rows differ "
                "from the CPU (near-ties); max logprob err %.2e\n",
                (long long)cases, (long long)greedy, (long long)mismatched, (long long)sampled, max_lp_err);
  }
};

void compare(const Logits& L, const SamplingBatch& b, const SamplerOutput& gpu, const SamplerOutput& cpu,
             Tally& tally, const std::string& what) {
  ++tally.cases;
  ASSERT_EQ(gpu.token.size(), size_t(L.R)) << what;
  ASSERT_EQ(gpu.logprob.size(), size_t(L.R)) << what;
  ASSERT_EQ(gpu.top.size(), b.max_logprobs > 0 ? size_t(L.R) : 0) << what;
  int reported = 0;
  for (int64_t r = 0; r < L.R; ++r) {
    const size_t ri = size_t(r);
    const int32_t t = gpu.token[ri];
    const std::string row_what = what + " row " + std::to_string(r) + " (T=" + std::to_string(b.temperature[ri]) +
                                 " k=" + std::to_string(b.top_k[ri]) + " p=" + std::to_string(b.top_p[ri]) +
                                 " min_p=" + std::to_string(b.min_p[ri]) + ")";
    if (b.temperature[ri] <= 0.f) {
      ++tally.greedy;
      EXPECT_EQ(t, cpu.token[ri]) << row_what << ": greedy token";
    } else {
      ++tally.sampled;
      if (t != cpu.token[ri]) {
        ++tally.mismatched;
        if (reported++ < 5)
          std::printf("[ CudaSampler ] %s: GPU %d, CPU %d\n", row_what.c_str(), t, cpu.token[ri]);
      }
      const std::string why = why_not_allowed(L.row(r), L.V, b, ri, t);
      EXPECT_EQ(why, "") << row_what << ": GPU token " << t << " not allowed";
    }
    if (t < 0 || t >= L.V) continue;
    const double lz = log_z(L.row(r), L.V);
    const double err = std::abs(double(gpu.logprob[ri]) - (double(L.row(r)[t]) - lz));
    tally.max_lp_err = std::max(tally.max_lp_err, err);
    EXPECT_LE(err, 1e-3) << row_what << ": logprob of the token";
    if (b.max_logprobs > 0) {
      ASSERT_EQ(gpu.top[ri].size(), cpu.top[ri].size()) << row_what;
      for (size_t j = 0; j < gpu.top[ri].size(); ++j) {
        EXPECT_EQ(gpu.top[ri][j].first, cpu.top[ri][j].first) << row_what << ": top id " << j;
        const double e = std::abs(double(gpu.top[ri][j].second) - double(cpu.top[ri][j].second));
        tally.max_lp_err = std::max(tally.max_lp_err, e);
        EXPECT_LE(e, 1e-3) << row_what << ": top logprob " << j;
      }
    }
  }
}

// Device copy of the logits, 16-byte aligned (cudaMalloc).
struct DeviceLogits {
  DeviceMem mem;
  explicit DeviceLogits(const Logits& L) : mem(L.bits.size() * 2) { upload(mem.get(), L.bits); }
};

TEST(CudaSampler, MatchesCpuOnMixedRows) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  Tally tally;
  for (int64_t V : {512, 1000, 32000, 151936, 262144})
    for (int64_t R : {1, 7, 64, 300}) {
      const std::string what = "V=" + std::to_string(V) + " R=" + std::to_string(R);
      SCOPED_TRACE(what);
      const Logits L = random_logits(R, V);
      const Batch B = random_batch(L);
      GpuSampler sampler(R, V, B.history_tokens(), 20, stream, B.banned_tokens());
      const DeviceLogits d(L);
      const SamplerOutput gpu = sampler.sample(d.mem.get(), R, B.b);
      const SamplerOutput cpu = cpu::sample(L.f.data(), R, V, B.b);
      compare(L, B.b, gpu, cpu, tally, what);
    }
  EXPECT_LE(tally.mismatched * 100, tally.sampled) << "more than 1% of sampled rows differ from the CPU";
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}


// ---- The launcher over device arrays made from a SamplingBatch (as GpuSampler packs them).
struct DeviceBatch {
  gpu::SamplerParams params;
  gpu::SamplerTokenLists history, banned;
  const int32_t* num_prompt = nullptr;
  int64_t list_tokens = 0;
  size_t ws_bytes = 0;
  std::vector<std::unique_ptr<DeviceMem>> keep;

  template <typename T>
  const T* put(const std::vector<T>& v) {
    keep.push_back(std::make_unique<DeviceMem>(v.size() * sizeof(T)));
    if (!v.empty()) upload(keep.back()->get(), v);
    return keep.back()->as<T>();
  }
  DeviceBatch(const SamplingBatch& b, int64_t V) {
    params.temperature = put(b.temperature);
    params.top_k = put(b.top_k);
    params.top_p = put(b.top_p);
    params.min_p = put(b.min_p);
    params.repetition_penalty = put(b.repetition_penalty);
    params.presence_penalty = put(b.presence_penalty);
    params.frequency_penalty = put(b.frequency_penalty);
    params.seed = put(b.seed);
    params.step = put(b.step);
    std::vector<int32_t> hoff{0}, hids, boff{0}, bids, np;
    for (size_t r = 0; r < b.size(); ++r) {
      const bool pen = b.tokens[r] && (b.repetition_penalty[r] != 1.f || b.presence_penalty[r] != 0.f ||
                                       b.frequency_penalty[r] != 0.f);
      if (pen) hids.insert(hids.end(), b.tokens[r]->begin(), b.tokens[r]->end());
      hoff.push_back(int32_t(hids.size()));
      np.push_back(pen ? b.num_prompt_tokens[r] : 0);
      bids.insert(bids.end(), b.banned[r].begin(), b.banned[r].end());
      boff.push_back(int32_t(bids.size()));
    }
    history = {put(hoff), put(hids)};
    banned = {put(boff), put(bids)};
    num_prompt = put(np);
    list_tokens = int64_t(hids.size() + bids.size());
    ws_bytes = gpu::sample_workspace_bytes(int64_t(b.size()), V, list_tokens);
    keep.push_back(std::make_unique<DeviceMem>(ws_bytes));
  }
  void* workspace() const { return keep.back()->get(); }
};

// A device buffer between guard bytes; everything poisoned with 0xFF first.
class Guarded {
 public:
  explicit Guarded(size_t bytes) : bytes_(bytes), mem_(bytes + 2 * kGuard) { poison(); }
  template <typename T>
  T* data() const { return mem_.as<T>(kGuard); }
  void poison() { NANOVLLM_CUDA_CHECK(cudaMemset(mem_.get(), 0xFF, bytes_ + 2 * kGuard)); }
  template <typename T>
  std::vector<T> download(size_t& bad_guards) const {
    std::vector<unsigned char> all(bytes_ + 2 * kGuard);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(all.data(), mem_.get(), all.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < all.size(); ++i)
      if ((i < kGuard || i >= kGuard + bytes_) && all[i] != 0xFF) ++bad_guards;
    std::vector<T> out(bytes_ / sizeof(T));
    std::memcpy(out.data(), all.data() + kGuard, bytes_);
    return out;
  }

 private:
  static constexpr size_t kGuard = 64;
  size_t bytes_;
  DeviceMem mem_;
};

// Copies row settings (and history) from one batch row to another.
void copy_settings(Batch& dst, size_t dr, const Batch& src, size_t sr) {
  SamplingBatch& d = dst.b;
  const SamplingBatch& s = src.b;
  d.temperature[dr] = s.temperature[sr];
  d.top_k[dr] = s.top_k[sr];
  d.top_p[dr] = s.top_p[sr];
  d.min_p[dr] = s.min_p[sr];
  d.repetition_penalty[dr] = s.repetition_penalty[sr];
  d.presence_penalty[dr] = s.presence_penalty[sr];
  d.frequency_penalty[dr] = s.frequency_penalty[sr];
  d.seed[dr] = s.seed[sr];
  d.step[dr] = s.step[sr];
  d.num_prompt_tokens[dr] = s.num_prompt_tokens[sr];
  d.banned[dr] = s.banned[sr];
  dst.hist[dr] = src.hist[sr];
  d.tokens[dr] = s.tokens[sr] ? &dst.hist[dr] : nullptr;
}

TEST(CudaSampler, RowDoesNotDependOnItsBatch) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  // An odd V puts the rows at different alignments in different batches.
  for (int64_t V : {int64_t{151936}, int64_t{32001}}) {
    SCOPED_TRACE("V=" + std::to_string(V));
    const int64_t P = 16, R = 200;
    Logits probes = random_logits(P, V);
    for (int64_t r = 0; r < 4; ++r) fill_row(probes, r, 1);  // flat rows: large top-k / top-p sets
    Batch pb = random_batch(probes);
    pb.b.max_logprobs = 5;
    for (size_t r = 0; r < 4; ++r) {
      pb.b.temperature[r] = 1.f;
      pb.b.top_k[r] = r % 2 ? 20000 : -1;
      pb.b.top_p[r] = r < 2 ? 0.99f : 1.f;
    }
    // The probes among other rows, at random positions.
    Logits L = random_logits(R, V);
    Batch B = random_batch(L);
    B.b.max_logprobs = 5;
    std::vector<size_t> pos(static_cast<size_t>(R));
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), rng());
    for (size_t j = 0; j < size_t(P); ++j) {
      std::copy_n(probes.bits.begin() + int64_t(j) * V, V, L.bits.begin() + int64_t(pos[j]) * V);
      std::copy_n(probes.f.begin() + int64_t(j) * V, V, L.f.begin() + int64_t(pos[j]) * V);
      copy_settings(B, pos[j], pb, j);
    }
    B.link();
    GpuSampler alone(P, V, pb.history_tokens(), 5, stream, pb.banned_tokens());
    GpuSampler mixed(R, V, B.history_tokens(), 5, stream, B.banned_tokens());
    const DeviceLogits dp(probes), dl(L);
    const SamplerOutput a = alone.sample(dp.mem.get(), P, pb.b);
    const SamplerOutput m = mixed.sample(dl.mem.get(), R, B.b);
    for (size_t j = 0; j < size_t(P); ++j) {
      EXPECT_EQ(a.token[j], m.token[pos[j]]) << "probe " << j;
      EXPECT_NEAR(a.logprob[j], m.logprob[pos[j]], 1e-5) << "probe " << j;
      for (size_t i = 0; i < a.top[j].size(); ++i) EXPECT_EQ(a.top[j][i].first, m.top[pos[j]][i].first);
    }
    // And twice the same batch: the same tokens.
    const SamplerOutput m2 = mixed.sample(dl.mem.get(), R, B.b);
    EXPECT_EQ(m.token, m2.token);
  }
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

// The renormalised distribution cpu::sample draws from (double, the CPU's filters exactly).
std::vector<double> filtered_probs(const std::vector<float>& logits, float T, int k, float top_p) {
  const size_t V = logits.size();
  std::vector<double> p(V);
  const float inv_t = 1.f / T;
  float mx = kNegInf;
  for (float x : logits) mx = std::max(mx, x * inv_t);
  double z = 0;
  for (size_t i = 0; i < V; ++i) z += (p[i] = std::exp(double(logits[i] * inv_t) - mx));
  std::vector<int32_t> c(V);
  std::iota(c.begin(), c.end(), 0);
  std::sort(c.begin(), c.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b); });
  if (k > 0 && size_t(k) < V) c.resize(size_t(k));
  double mass = 0, cum = 0;
  for (int32_t i : c) mass += p[size_t(i)];
  size_t keep = 0;
  while (keep < c.size() && (keep == 0 || cum < top_p * mass)) cum += p[size_t(c[keep++])];
  c.resize(keep);
  std::vector<double> q(V, 0.0);
  for (int32_t i : c) q[size_t(i)] = p[size_t(i)] / cum;
  return q;
}

TEST(CudaSampler, DrawsFollowTheDistribution) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  struct Case {
    int64_t V;
    float T;
    int k;
    float top_p;
    int style;
  };
  // Unfiltered; top-k + top-p on a small set; top-p over a set larger than a block sorts.
  for (const Case c : {Case{40, 1.f, -1, 1.f, 5}, Case{1000, 0.7f, 10, 0.8f, 5}, Case{5000, 1.f, -1, 0.95f, 1}}) {
    SCOPED_TRACE("V=" + std::to_string(c.V) + " k=" + std::to_string(c.k) + " top_p=" + std::to_string(c.top_p));
    Logits one{1, c.V, std::vector<uint16_t>(size_t(c.V)), std::vector<float>(size_t(c.V))};
    fill_row(one, 0, c.style);
    const int64_t R = 1000, batches = 100;
    Logits L{R, c.V, {}, {}};
    for (int64_t r = 0; r < R; ++r) {
      L.bits.insert(L.bits.end(), one.bits.begin(), one.bits.end());
      L.f.insert(L.f.end(), one.f.begin(), one.f.end());
    }
    Batch B;
    B.resize(size_t(R));
    const uint64_t seed = rng()();
    for (size_t r = 0; r < size_t(R); ++r) {
      B.b.temperature[r] = c.T;
      B.b.top_k[r] = c.k;
      B.b.top_p[r] = c.top_p;
      B.b.min_p[r] = 0.f;
      B.b.repetition_penalty[r] = 1.f;
      B.b.presence_penalty[r] = 0.f;
      B.b.frequency_penalty[r] = 0.f;
      B.b.seed[r] = seed;
      B.b.tokens[r] = nullptr;
    }
    GpuSampler sampler(R, c.V, 0, 0, stream, 0);
    const DeviceLogits d(L);
    std::vector<double> count(size_t(c.V), 0);
    for (int64_t s = 0; s < batches; ++s) {
      for (size_t r = 0; r < size_t(R); ++r) B.b.step[r] = uint64_t(s * R) + r;
      for (int32_t t : sampler.sample(d.mem.get(), R, B.b).token) ++count[size_t(t)];
    }
    const std::vector<double> q = filtered_probs(one.f, c.T, c.k, c.top_p);
    const double n = double(R * batches);
    double chi2 = 0, rest_obs = 0, rest_exp = 0;
    int bins = 0;
    for (size_t i = 0; i < size_t(c.V); ++i) {
      if (q[i] == 0) {
        EXPECT_EQ(count[i], 0) << "token " << i << " is outside the filtered set";
        continue;
      }
      if (n * q[i] < 5) {
        rest_obs += count[i];
        rest_exp += n * q[i];
        continue;
      }
      chi2 += (count[i] - n * q[i]) * (count[i] - n * q[i]) / (n * q[i]);
      ++bins;
    }
    if (rest_exp > 0) chi2 += (rest_obs - rest_exp) * (rest_obs - rest_exp) / rest_exp, ++bins;
    const double df = bins - 1, bound = df + 6 * std::sqrt(2 * df);
    std::printf("[ CudaSampler ] V=%lld k=%d top_p=%.2f: chi2 %.1f over %d bins (bound %.1f)\n",
                (long long)c.V, c.k, c.top_p, chi2, bins, bound);
    EXPECT_LT(chi2, bound);
  }
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

// The split path (greedy and temperature-only rows without lists or logprobs, each row over
// several blocks) against the one-block path (split_rows = false) on the same launch: the same
// tokens bit for bit (the same race over the same noise) and logprobs within 1e-4; and against
// the CPU. Shapes around the chunk size (8192), V below it and V = 1, misaligned rows, constant
// rows, rows with -inf logits (some, all but one, all), mixed with rows of the other paths.
TEST(CudaSampler, SplitRowsMatchOneBlockPerRow) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  Tally tally;
  for (int64_t V : {1, 2, 7, 9, 100, 1000, 8191, 8192, 8193, 8200, 16384 + 5, 40000, 151936, 262144})
    for (int64_t R : {1, 5, 37})
      for (bool misalign : {false, true}) {
        const std::string what = "split V=" + std::to_string(V) + " R=" + std::to_string(R) +
                                 " misalign=" + std::to_string(misalign);
        SCOPED_TRACE(what);
        Logits L = random_logits(R, V);
        std::uniform_int_distribution<int64_t> any(0, V - 1);
        for (int64_t r = 0; r < R; ++r) {
          const int special = std::uniform_int_distribution<int>(0, 9)(rng());
          uint16_t* bits = L.bits.data() + r * V;
          float* f = L.f.data() + r * V;
          auto set_ninf = [&](int64_t i) {
            bits[i] = 0xFF80;
            f[i] = kNegInf;
          };
          if (special == 0) {  // some -inf
            for (int64_t i = 0; i < V; ++i)
              if (chance(0.3)) set_ninf(i);
          } else if (special == 1) {  // all -inf but one
            const int64_t keep = any(rng());
            for (int64_t i = 0; i < V; ++i)
              if (i != keep) set_ninf(i);
          } else if (special == 2) {  // all -inf
            for (int64_t i = 0; i < V; ++i) set_ninf(i);
          } else if (special == 3) {
            fill_row(L, r, 3);  // constant
          }
        }
        Batch B;
        B.resize(size_t(R));
        for (size_t r = 0; r < size_t(R); ++r) {
          const bool other_path = chance(0.15);  // top-k / top-p rows: the one-block path in both runs
          B.b.temperature[r] = chance(0.3) ? 0.f : pick({0.3f, 0.6f, 1.f, 1.5f});
          B.b.top_k[r] = other_path ? 20 : pick({-1, 0, int32_t(V), int32_t(V) + 7});
          B.b.top_p[r] = other_path ? 0.9f : 1.f;
          B.b.min_p[r] = 0.f;
          B.b.repetition_penalty[r] = 1.f;
          B.b.seed[r] = rng()();
          B.b.step[r] = std::uniform_int_distribution<uint64_t>(0, 100000)(rng());
          B.b.tokens[r] = nullptr;
        }
        B.b.max_logprobs = 0;
        DeviceBatch db(B.b, V);
        DeviceMem logits(L.bits.size() * 2 + 16);
        uint16_t* x = logits.as<uint16_t>(misalign ? 2 : 0);
        NANOVLLM_CUDA_CHECK(cudaMemcpy(x, L.bits.data(), L.bits.size() * 2, cudaMemcpyHostToDevice));
        Guarded token(size_t(R) * 4), logprob(size_t(R) * 4);
        const gpu::SamplerResults out{token.data<int32_t>(), logprob.data<float>(), nullptr, nullptr};
        auto run = [&](bool split, std::vector<int32_t>& tok, std::vector<float>& lp) {
          token.poison();
          logprob.poison();
          db.params.split_rows = split;
          gpu::sample(x, R, V, db.params, db.history, db.num_prompt, db.banned, db.list_tokens, 0, db.workspace(),
                      db.ws_bytes, out, stream);
          NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
          size_t bad = 0;
          tok = token.download<int32_t>(bad);
          lp = logprob.download<float>(bad);
          EXPECT_EQ(bad, 0u) << "guard bytes written";
        };
        std::vector<int32_t> tok_split, tok_one;
        std::vector<float> lp_split, lp_one;
        run(true, tok_split, lp_split);
        run(false, tok_one, lp_one);
        const SamplerOutput cpu = cpu::sample(L.f.data(), R, V, B.b);
        SamplerOutput gpu;
        gpu.token = tok_split;
        gpu.logprob = lp_split;
        for (int64_t r = 0; r < R; ++r) {
          const size_t ri = size_t(r);
          const std::string row_what = what + " row " + std::to_string(r) + " T=" + std::to_string(B.b.temperature[ri]);
          EXPECT_EQ(tok_split[ri], tok_one[ri]) << row_what << ": split vs one-block token";
          ASSERT_TRUE(tok_split[ri] >= 0 && tok_split[ri] < V) << row_what;
          const double lz = log_z(L.row(r), V);
          if (std::isfinite(lz)) {
            EXPECT_NEAR(lp_split[ri], lp_one[ri], 1e-4) << row_what << ": split vs one-block logprob";
          } else {
            EXPECT_FALSE(std::isfinite(lp_split[ri])) << row_what << ": logprob of a row of -inf";
          }
        }
        // The CPU checks (greedy exact, sampled allowed, logprobs) where the row has a finite logit.
        bool all_finite_z = true;
        for (int64_t r = 0; r < R; ++r) all_finite_z = all_finite_z && std::isfinite(log_z(L.row(r), V));
        if (all_finite_z) {
          compare(L, B.b, gpu, cpu, tally, what);
        } else {
          for (int64_t r = 0; r < R; ++r) {
            const size_t ri = size_t(r);
            if (B.b.temperature[ri] <= 0.f) EXPECT_EQ(tok_split[ri], cpu.token[ri]) << what << " row " << r;
            else EXPECT_EQ(why_not_allowed(L.row(r), V, B.b, ri, tok_split[ri]), "") << what << " row " << r;
          }
        }
      }
  EXPECT_LE(tally.mismatched * 100, tally.sampled) << "more than 1% of sampled rows differ from the CPU";
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(CudaSampler, LauncherWritesEveryOutputAndIsCapturable) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  struct Case {
    int64_t V;
    int N;
    bool misalign;
  };
  for (const Case c : {Case{1000, 7, false}, Case{1001, 20, true}, Case{10, 20, false}, Case{4099, 0, true}}) {
    const std::string what = "V=" + std::to_string(c.V) + " N=" + std::to_string(c.N) + " misalign=" + std::to_string(c.misalign);
    SCOPED_TRACE(what);
    const int64_t R = 37;
    const Logits L = random_logits(R, c.V);
    Batch B = random_batch(L);
    B.b.max_logprobs = c.N;
    const DeviceBatch db(B.b, c.V);
    DeviceMem logits(L.bits.size() * 2 + 16);
    uint16_t* x = logits.as<uint16_t>(c.misalign ? 2 : 0);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(x, L.bits.data(), L.bits.size() * 2, cudaMemcpyHostToDevice));
    Guarded token(size_t(R) * 4), logprob(size_t(R) * 4), ids(size_t(R * c.N) * 4), lps(size_t(R * c.N) * 4);
    gpu::SamplerResults out{token.data<int32_t>(), logprob.data<float>(), c.N ? ids.data<int32_t>() : nullptr,
                            c.N ? lps.data<float>() : nullptr};
    auto launch = [&] {
      gpu::sample(x, R, c.V, db.params, db.history, db.num_prompt, db.banned, db.list_tokens, c.N, db.workspace(),
                  db.ws_bytes, out, stream);
    };
    launch();
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
    size_t bad = 0;
    const auto tok = token.download<int32_t>(bad);
    const auto lp = logprob.download<float>(bad);
    const auto top_id = ids.download<int32_t>(bad);
    const auto top_lp = lps.download<float>(bad);
    EXPECT_EQ(bad, 0u) << "guard bytes written";
    const SamplerOutput cpu = cpu::sample(L.f.data(), R, c.V, B.b);
    for (int64_t r = 0; r < R; ++r) {
      const size_t ri = size_t(r);
      ASSERT_TRUE(tok[ri] >= 0 && tok[ri] < c.V) << "row " << r << " token " << tok[ri];
      EXPECT_TRUE(std::isfinite(lp[ri])) << "row " << r;
      if (B.b.temperature[ri] <= 0.f) EXPECT_EQ(tok[ri], cpu.token[ri]) << "row " << r;
      else EXPECT_EQ(why_not_allowed(L.row(r), c.V, B.b, ri, tok[ri]), "") << "row " << r;
      for (int j = 0; j < c.N; ++j) {
        const size_t e = ri * size_t(c.N) + size_t(j);
        if (j < c.V) {
          EXPECT_EQ(top_id[e], cpu.top[ri][size_t(j)].first) << "row " << r << " top " << j;
          EXPECT_NEAR(top_lp[e], cpu.top[ri][size_t(j)].second, 1e-3) << "row " << r << " top " << j;
        } else {
          EXPECT_EQ(top_id[e], -1) << "row " << r << " top " << j << " past V";
          EXPECT_EQ(top_lp[e], kNegInf) << "row " << r << " top " << j << " past V";
        }
      }
    }
    // The same launch captured in a graph and replayed: the same results, bit for bit.
    token.poison();
    logprob.poison();
    ids.poison();
    lps.poison();
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    NANOVLLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    launch();
    NANOVLLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    NANOVLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    bad = 0;
    EXPECT_EQ(token.download<int32_t>(bad), tok);
    const auto lp2 = logprob.download<float>(bad);
    EXPECT_EQ(std::memcmp(lp2.data(), lp.data(), lp.size() * 4), 0);
    EXPECT_EQ(ids.download<int32_t>(bad), top_id);
    EXPECT_EQ(bad, 0u);
  }
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Two launches outstanding (the engine queues step n + 1 before it collects step n): each
// collect() returns its own launch's results, equal to a sample() of the same batch, the device
// tokens are the latest launch's, and a third launch, a sample() while launches are
// outstanding, or a collect of nothing is an Error.
TEST(CudaSampler, TwoLaunchesOutstandingCollectInOrder) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  const int64_t V = 32000;
  for (int64_t R : {1, 7, 64}) {
    SCOPED_TRACE("R=" + std::to_string(R));
    const Logits L1 = random_logits(R, V), L2 = random_logits(R + 3, V);
    const Batch B1 = random_batch(L1), B2 = random_batch(L2);
    GpuSampler s(R + 3, V, B1.history_tokens() + B2.history_tokens(), 20, stream,
                 B1.banned_tokens() + B2.banned_tokens());
    const DeviceLogits d1(L1), d2(L2);
    const SamplerOutput want1 = s.sample(d1.mem.get(), R, B1.b), want2 = s.sample(d2.mem.get(), R + 3, B2.b);
    s.launch(d1.mem.get(), R, B1.b);
    s.launch(d2.mem.get(), R + 3, B2.b);
    try {
      s.launch(d1.mem.get(), R, B1.b);
      ADD_FAILURE() << "a third outstanding launch was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("third launch"), std::string::npos) << e.what();
    }
    EXPECT_THROW(s.sample(d1.mem.get(), R, B1.b), Error) << "sample() would collect an older launch's results";
    const SamplerOutput got1 = s.collect(), got2 = s.collect();
    EXPECT_EQ(got1.token, want1.token);
    EXPECT_EQ(got1.logprob, want1.logprob);
    EXPECT_EQ(got1.top, want1.top);
    EXPECT_EQ(got2.token, want2.token);
    EXPECT_EQ(got2.logprob, want2.logprob);
    EXPECT_EQ(got2.top, want2.top);
    std::vector<int32_t> on_device(static_cast<size_t>(R + 3));
    NANOVLLM_CUDA_CHECK(cudaMemcpy(on_device.data(), s.device_tokens(), on_device.size() * 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(on_device, want2.token) << "device_tokens() holds the latest launch's tokens";
    EXPECT_THROW(s.collect(), Error);
  }
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(CudaSampler, BatchesBeyondCapacityAreErrors) {
  REQUIRE_GPU();
  const int64_t V = 1000;
  GpuSampler s(4, V, 10, 5, nullptr, 3);
  const Logits L = random_logits(5, V);
  const DeviceLogits d(L);
  auto expect_error = [&](const Batch& B, int64_t R, const char* needle) {
    try {
      s.sample(d.mem.get(), R, B.b);
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Batch B = random_batch(L);
  expect_error(B, 5, "max_rows");
  Batch ok;
  ok.resize(4);
  for (size_t r = 0; r < 4; ++r) {
    ok.b.temperature[r] = 0.f;
    ok.b.repetition_penalty[r] = 1.f;
    ok.b.top_p[r] = 1.f;
    ok.b.tokens[r] = nullptr;
  }
  EXPECT_NO_THROW(s.sample(d.mem.get(), 4, ok.b));
  Batch many = ok;
  many.b.max_logprobs = 6;
  expect_error(many, 4, "max_logprobs");
  Batch hist = ok;
  hist.hist[0].assign(11, 1);
  hist.b.tokens[0] = &hist.hist[0];
  hist.b.repetition_penalty[0] = 1.2f;
  expect_error(hist, 4, "max_history_tokens");
  Batch bans = ok;
  bans.b.banned[1] = {1, 2, 3, 4};
  expect_error(bans, 4, "max_banned_tokens");
  Batch short_batch = ok;
  short_batch.b.seed.resize(3);
  expect_error(short_batch, 4, "entries");
}

TEST(CudaSamplerArgs, RejectedBeforeAnyLaunch) {
  void* p = reinterpret_cast<void*>(uintptr_t{0x1000});
  const float* f = static_cast<const float*>(p);
  const int32_t* i = static_cast<const int32_t*>(p);
  const uint64_t* u = static_cast<const uint64_t*>(p);
  const gpu::SamplerParams params{f, i, f, f, f, f, f, u, u};
  const gpu::SamplerResults out{static_cast<int32_t*>(p), static_cast<float*>(p), static_cast<int32_t*>(p),
                                static_cast<float*>(p)};
  auto call = [&](const void* logits, int64_t R, int64_t V, const gpu::SamplerParams& pp, gpu::SamplerTokenLists h,
                  int N, size_t ws_bytes, const gpu::SamplerResults& o) {
    gpu::sample(logits, R, V, pp, h, i, {}, 10, N, p, ws_bytes, o, nullptr);
  };
  EXPECT_THROW(call(p, -1, 1000, params, {}, 0, 0, out), Error);
  EXPECT_THROW(call(p, 4, 0, params, {}, 0, 0, out), Error);
  EXPECT_THROW(call(p, 4, gpu::kSamplerMaxVocab + 1, params, {}, 0, 0, out), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {}, -1, 0, out), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {}, gpu::kSamplerMaxLogprobs + 1, 0, out), Error);
  EXPECT_THROW(call(nullptr, 4, 1000, params, {}, 0, 0, out), Error);
  EXPECT_THROW(call(static_cast<const char*>(p) + 1, 4, 1000, params, {}, 0, 0, out), Error);  // odd address
  gpu::SamplerParams no_seed = params;
  no_seed.seed = nullptr;
  EXPECT_THROW(call(p, 4, 1000, no_seed, {}, 0, 0, out), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {}, 5, 0, gpu::SamplerResults{out.token, out.logprob, nullptr, nullptr}), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {i, i}, 0, gpu::sample_workspace_bytes(4, 1000, 10) - 1, out), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {}, 0, gpu::sample_workspace_bytes(4, 1000, 0) - 1, out), Error);
  EXPECT_THROW(call(p, 4, 1000, params, {i, nullptr}, 0, gpu::sample_workspace_bytes(4, 1000, 10), out), Error);
  EXPECT_NO_THROW(call(nullptr, 0, 1000, gpu::SamplerParams{}, {}, 0, 0, gpu::SamplerResults{}));  // R == 0
  EXPECT_THROW(GpuSampler(4, 0, 0, 0, nullptr), Error);
  EXPECT_THROW(GpuSampler(0, 1000, 0, 0, nullptr), Error);
  EXPECT_THROW(GpuSampler(4, 1000, 0, gpu::kSamplerMaxLogprobs + 1, nullptr), Error);
}

// Informational: kernel time (the launcher alone) and GpuSampler::sample end to end (packing,
// copies, synchronisation), as GB/s of bf16 logits read once, for R = 1, 8 and 256 rows.
TEST(CudaSampler, TimingInformational) {
  REQUIRE_GPU();
  cudaStream_t stream;
  NANOVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  const int64_t max_rows = 256, V = 151936;
  Logits L{max_rows, V, std::vector<uint16_t>(size_t(max_rows * V)), std::vector<float>(size_t(max_rows * V))};
  for (int64_t r = 0; r < max_rows; ++r) fill_row(L, r, 0);
  const DeviceLogits d(L);
  struct Case {
    int64_t R;
    const char* name;
    float T;
    int k;
    float top_p;
    int N;
  };
  std::vector<Case> cases;
  for (int64_t R : {1, 8, 256}) {
    cases.push_back({R, "greedy", 0.f, -1, 1.f, 0});
    cases.push_back({R, "temperature 0.6", 0.6f, -1, 1.f, 0});
    cases.push_back({R, "top-k 50, top-p 0.9", 0.8f, 50, 0.9f, 0});
  }
  cases.push_back({256, "temperature 1", 1.f, -1, 1.f, 0});
  cases.push_back({256, "top-p 0.9", 1.f, -1, 0.9f, 0});
  cases.push_back({256, "top-p 0.9, T 0.5", 0.5f, -1, 0.9f, 0});
  cases.push_back({256, "greedy, 20 logprobs", 0.f, -1, 1.f, 20});
  cases.push_back({256, "top-k 50, top-p 0.9, 20 logprobs", 0.8f, 50, 0.9f, 20});
  GpuSampler sampler(max_rows, V, 0, 20, stream, 0);
  // NANOVLLM_SAMPLER_TIMING_CASE="R=256 temperature 0.6" runs that case alone (for Nsight
  // Compute: its launches are then the only ones).
  const char* only = std::getenv("NANOVLLM_SAMPLER_TIMING_CASE");
  for (const Case& c : cases) {
    if (only && std::string(only) != "R=" + std::to_string(c.R) + " " + c.name) continue;
    const int64_t R = c.R;
    Batch B;
    B.resize(size_t(R));
    for (size_t r = 0; r < size_t(R); ++r) {
      B.b.temperature[r] = c.T;
      B.b.top_k[r] = c.k;
      B.b.top_p[r] = c.top_p;
      B.b.repetition_penalty[r] = 1.f;
      B.b.seed[r] = r;
      B.b.tokens[r] = nullptr;
    }
    B.b.max_logprobs = c.N;
    const DeviceBatch db(B.b, V);
    DeviceMem out_mem(size_t(R) * (8 + 8 * size_t(std::max(c.N, 1))));
    const gpu::SamplerResults out{out_mem.as<int32_t>(), out_mem.as<float>(size_t(R) * 4),
                                  out_mem.as<int32_t>(size_t(R) * 8),
                                  out_mem.as<float>(size_t(R) * (8 + 4 * size_t(std::max(c.N, 1))))};
    auto launch = [&] {
      gpu::sample(d.mem.get(), R, V, db.params, db.history, db.num_prompt, db.banned, db.list_tokens, c.N,
                  db.workspace(), db.ws_bytes, out, stream);
    };
    cudaEvent_t start, stop;
    NANOVLLM_CUDA_CHECK(cudaEventCreate(&start));
    NANOVLLM_CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < 3; ++i) launch();
    const int iters = 20;
    NANOVLLM_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < iters; ++i) launch();
    NANOVLLM_CUDA_CHECK(cudaEventRecord(stop, stream));
    NANOVLLM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double kernel_s = ms / 1e3 / iters;
    sampler.sample(d.mem.get(), R, B.b);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) sampler.sample(d.mem.get(), R, B.b);
    const double e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    const double bytes = double(R * V * 2);
    std::printf("[ CudaSampler ] R=%-3lld V=%lld %-34s kernel %8.1f us (%6.0f GB/s)   GpuSampler::sample %8.1f us\n",
                (long long)R, (long long)V, c.name, kernel_s * 1e6, bytes / kernel_s / 1e9, e2e_s * 1e6);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  NANOVLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace nanovllm
