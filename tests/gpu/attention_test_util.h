// The paged attention tests' shared pieces (test_cuda_attention*.cpp): random bf16 inputs with
// a seed printed once per run, guarded device buffers, batches with scattered block tables, the
// CPU reference, and the decode / prefill checks against it. See test_cuda_attention.cpp for
// what the tests cover.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace nanovllm::attention_test {

inline bool sanitizing() { return std::getenv("NANOVLLM_GPU_SANITIZER") != nullptr; }

inline std::mt19937_64& rng() {
  static std::mt19937_64 gen = [] {
    const uint64_t seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    std::printf("[ CudaAttention ] random seed %llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return gen;
}

// Random bf16 values (uniform, mean 0, the given standard deviation, never zero): bits for the
// device, the same values as float for the reference. splitmix64 keeps millions of them cheap.
struct Bf16Host {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};
inline Bf16Host random_bf16(size_t n, float stddev) {
  Bf16Host h{std::vector<uint16_t>(n), std::vector<float>(n)};
  uint64_t x = rng()();
  const float half_width = stddev * 1.7320508f;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float v = (float(z >> 40) * (1.f / 16777216.f) * 2.f - 1.f) * half_width;
    uint16_t b = f32_to_bf16(v);
    if ((b & 0x7fff) == 0) b = f32_to_bf16(stddev * 0.5f);  // never zeros
    h.bits[i] = b;
    h.f[i] = bf16_to_f32(b);
  }
  return h;
}

using test::DeviceBuf;
using test::Stream;

struct Stats {
  double rel = 0, worst_row = 0;
  int64_t nonfinite = 0, bad = 0;
};

// rows x cols, one row per (token, head). Element bound 2^-7 |ref| + 1e-2 rms(row): the output's
// bf16 rounding, plus (prefill) P rounded to bf16 before the PV product.
inline Stats compare(const std::vector<uint16_t>& out, const std::vector<float>& ref, int64_t rows,
              int64_t cols) {
  Stats s;
  double num = 0, den = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double rn = 0, rd = 0;
    for (int64_t c = 0; c < cols; ++c) rd += double(ref[r * cols + c]) * ref[r * cols + c];
    const double rms = std::sqrt(rd / double(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const double o = bf16_to_f32(out[r * cols + c]), want = ref[r * cols + c];
      if (!std::isfinite(o)) {
        ++s.nonfinite;
        continue;
      }
      const double d = o - want;
      rn += d * d;
      if (std::abs(d) > std::ldexp(std::abs(want), -7) + 1e-2 * rms) ++s.bad;
    }
    s.worst_row = std::max(s.worst_row, rd > 0 ? std::sqrt(rn / rd) : (rn > 0 ? INFINITY : 0.0));
    num += rn;
    den += rd;
  }
  s.rel = s.nonfinite ? INFINITY : (den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0));
  if (s.nonfinite) s.worst_row = INFINITY;
  return s;
}

struct Report {
  const char* kernel;
  int cases = 0;
  double rel = 0, row = 0;
  void add(const Stats& s) {
    ++cases;
    rel = std::max(rel, s.rel);
    row = std::max(row, s.worst_row);
  }
  ~Report() {
    std::printf("[ CudaAttention ] %-24s %4d cases  max rel err %.3e  (worst row %.3e)\n", kernel,
                cases, rel, row);
  }
};

#define EXPECT_CLOSE(stats, what)                                   \
  do {                                                              \
    EXPECT_EQ((stats).nonfinite, 0) << what << ": NaN or infinity"; \
    EXPECT_EQ((stats).bad, 0) << what << ": elements out of bound"; \
    EXPECT_LT((stats).rel, 1e-2) << what;                           \
    EXPECT_LT((stats).worst_row, 1e-2) << what;                     \
  } while (0)

struct Seq {
  int q_len, ctx;  // query rows this step; keys visible to the last of them (prefix included)
};

// One step's batch: inputs on the host, in both bf16 bits and float.
struct Batch {
  int nh, nkv, d, bs;
  std::vector<Seq> seqs;
  int64_t T = 0, num_blocks = 0;
  int max_blocks = 0, max_ctx = 0;
  std::vector<int32_t> cu, ctx, tables;
  Bf16Host qkv, kc, vc;
  float scale;

  int num_seqs() const { return int(seqs.size()); }
  int64_t row() const { return int64_t(nh + 2 * nkv) * d; }
  int64_t cache_elems() const { return num_blocks * bs * nkv * d; }
  std::string what() const {
    std::string s = "nh=" + std::to_string(nh) + " nkv=" + std::to_string(nkv) +
                    " d=" + std::to_string(d) + " bs=" + std::to_string(bs) + " seqs(q/ctx)=";
    for (const Seq& q : seqs) s += std::to_string(q.q_len) + "/" + std::to_string(q.ctx) + " ";
    return s;
  }
};

// q_std sets how peaked the softmax is (scores ~ q_std * N(0, 1) at scale 1/sqrt(d)).
// pool_blocks / table_width, if larger, set the cache's block count and the table's width (so
// two batches can share captured buffers).
inline Batch make_batch(int nh, int nkv, int d, int bs, std::vector<Seq> seqs, float q_std = 1.f,
                 int64_t pool_blocks = 0, int table_width = 0) {
  Batch b;
  b.nh = nh, b.nkv = nkv, b.d = d, b.bs = bs, b.seqs = std::move(seqs);
  b.scale = 1.f / std::sqrt(float(d));
  b.cu.push_back(0);
  int64_t need = 0;
  for (const Seq& s : b.seqs) {
    b.cu.push_back(b.cu.back() + s.q_len);
    b.ctx.push_back(s.ctx);
    const int blocks = (s.ctx + bs - 1) / bs;
    need += blocks;
    b.max_blocks = std::max(b.max_blocks, blocks);
    b.max_ctx = std::max(b.max_ctx, s.ctx);
  }
  b.T = b.cu.back();
  b.max_blocks = std::max(b.max_blocks + 2, table_width);  // -1 padding past every end
  b.num_blocks = std::max(need + 5, pool_blocks);            // and blocks nobody owns
  std::vector<int32_t> pool(b.num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng());
  b.tables.assign(size_t(b.num_seqs()) * b.max_blocks, -1);
  size_t next = 0;
  for (int s = 0; s < b.num_seqs(); ++s)
    for (int i = 0; i < (b.seqs[s].ctx + bs - 1) / bs; ++i) b.tables[size_t(s) * b.max_blocks + i] = pool[next++];

  b.qkv = random_bf16(size_t(b.T * b.row()), 1.f);
  if (q_std != 1.f)
    for (int64_t t = 0; t < b.T; ++t)
      for (int64_t i = 0; i < int64_t(nh) * d; ++i) {
        const size_t k = size_t(t * b.row() + i);
        b.qkv.bits[k] = f32_to_bf16(b.qkv.f[k] * q_std);
        b.qkv.f[k] = bf16_to_f32(b.qkv.bits[k]);
      }
  b.kc = random_bf16(size_t(b.cache_elems()), 1.f);
  b.vc = random_bf16(size_t(b.cache_elems()), 1.f);
  return b;
}

inline std::vector<float> reference(const Batch& b) {
  std::vector<float> ref(size_t(b.T) * b.nh * b.d);
  cpu::paged_attention(b.qkv.f.data(), b.nh, b.nkv, b.d, b.scale, b.kc.f.data(), b.vc.f.data(),
                       b.bs, b.num_blocks, b.num_seqs(), b.cu.data(), b.ctx.data(), b.tables.data(),
                       b.max_blocks, ref.data());
  return ref;
}

// The batch's inputs on the device.
struct DeviceBatch {
  DeviceBuf<uint16_t> qkv, kc, vc, out;
  DeviceBuf<int32_t> cu, ctx, tables;
  explicit DeviceBatch(const Batch& b)
      : qkv(size_t(b.T * b.row())), kc(size_t(b.cache_elems())), vc(size_t(b.cache_elems())),
        out(size_t(b.T) * b.nh * b.d), cu(b.cu.size()), ctx(b.ctx.size()), tables(b.tables.size()) {
    qkv.upload(b.qkv.bits);
    kc.upload(b.kc.bits);
    vc.upload(b.vc.bits);
    cu.upload(b.cu);
    ctx.upload(b.ctx);
    tables.upload(b.tables);
  }
};

inline void run_decode(DeviceBatch& d, const Batch& b, int max_context_len, DeviceBuf<float>& ws,
                cudaStream_t stream, int* counters = nullptr) {
  gpu::paged_attention_decode(d.qkv.data(), b.nh, b.nkv, b.d, b.scale, d.kc.data(), d.vc.data(),
                              b.bs, b.num_blocks, b.num_seqs(), d.ctx.data(), d.tables.data(),
                              b.max_blocks, max_context_len, d.out.data(), ws.data(), ws.bytes(),
                              stream, counters);
}

inline void run_prefill(DeviceBatch& d, const Batch& b, cudaStream_t stream) {
  gpu::paged_attention_prefill(d.qkv.data(), b.T, b.nh, b.nkv, b.d, b.scale, d.kc.data(),
                               d.vc.data(), b.bs, b.num_blocks, b.num_seqs(), d.cu.data(),
                               d.ctx.data(), d.tables.data(), b.max_blocks, d.out.data(), stream);
}

// Checks one decode batch; `bound` is the max_context_len passed (0: the batch's own maximum).
// The output bits go to *out_bits when given.
inline Stats check_decode(Stream& stream, const Batch& b, int bound = 0, std::vector<uint16_t>* out_bits = nullptr) {
  SCOPED_TRACE(b.what() + " bound=" + std::to_string(bound));
  const int max_ctx = bound > 0 ? bound : b.max_ctx;
  const std::vector<float> ref = reference(b);
  DeviceBatch d(b);
  const size_t ws_bytes = gpu::paged_attention_decode_workspace_bytes(b.num_seqs(), b.nh, b.nkv, b.d, max_ctx);
  DeviceBuf<float> ws(ws_bytes / sizeof(float));
  run_decode(d, b, max_ctx, ws, stream);
  stream.sync();
  const std::vector<uint16_t> out = d.out.download();
  EXPECT_EQ(d.out.bad_guards(), 0u) << "wrote outside out";
  ws.download();
  EXPECT_EQ(ws.bad_guards(), 0u) << "wrote outside the workspace";
  const Stats s = compare(out, ref, b.T * b.nh, b.d);
  EXPECT_CLOSE(s, b.what());
  if (out_bits) *out_bits = out;

  // Again with counters: the splits combined inside the one kernel must give the same bits, and
  // leave every counter zero (twice, so the second call starts from what the first left).
  DeviceBuf<int32_t> counters(gpu::paged_attention_decode_counters(b.num_seqs(), b.nh, b.nkv));
  NANOVLLM_CUDA_CHECK(cudaMemset(counters.data(), 0, counters.bytes()));
  for (int round = 0; round < 2; ++round) {
    d.out.poison();
    run_decode(d, b, max_ctx, ws, stream, counters.data());
    stream.sync();
    const std::vector<uint16_t> fused = d.out.download();
    EXPECT_EQ(d.out.bad_guards(), 0u) << "wrote outside out (counters)";
    size_t diff = 0;
    for (size_t i = 0; i < fused.size(); ++i) diff += fused[i] != out[i];
    EXPECT_EQ(diff, 0u) << "combining in the split kernel changed the output bits (round " << round << ")";
    const std::vector<int32_t> left = counters.download();
    EXPECT_EQ(counters.bad_guards(), 0u) << "wrote outside the counters";
    EXPECT_EQ(std::count(left.begin(), left.end(), 0), std::ptrdiff_t(left.size())) << "counters not left zero";
  }
  return s;
}

inline Stats check_prefill(Stream& stream, const Batch& b) {
  SCOPED_TRACE(b.what());
  const std::vector<float> ref = reference(b);
  DeviceBatch d(b);
  run_prefill(d, b, stream);
  stream.sync();
  const std::vector<uint16_t> out = d.out.download();
  EXPECT_EQ(d.out.bad_guards(), 0u) << "wrote outside out";
  const Stats s = compare(out, ref, b.T * b.nh, b.d);
  EXPECT_CLOSE(s, b.what());
  return s;
}

// Decode contexts for a block size: 1, around the block boundaries, odd, and one long one.
inline std::vector<Seq> decode_seqs(int bs, int n_long) {
  std::vector<int> ctx = {1, 2, std::max(3, bs - 1), bs + 1, 2 * bs, 129, 777};
  if (bs == 1) ctx = {1, 2, 3, 17, 129, 777};
  if (sanitizing()) ctx = {1, std::max(2, bs - 1), bs + 1, 150};
  else if (n_long > 0) ctx.push_back(n_long);
  std::vector<Seq> seqs;
  for (int c : ctx) seqs.push_back({1, c});
  std::shuffle(seqs.begin(), seqs.end(), rng());
  return seqs;
}

// Forces the d = 128 prefill variant ("wide" or "dual", see paged_attention_prefill.cu) for
// its lifetime through NANOVLLM_PREFILL_D128, which the launcher reads at every call.
class ForcePrefillVariant {
 public:
  explicit ForcePrefillVariant(const char* variant) { setenv("NANOVLLM_PREFILL_D128", variant, 1); }
  ~ForcePrefillVariant() { unsetenv("NANOVLLM_PREFILL_D128"); }
  ForcePrefillVariant(const ForcePrefillVariant&) = delete;
  ForcePrefillVariant& operator=(const ForcePrefillVariant&) = delete;
};

}  // namespace nanovllm::attention_test
