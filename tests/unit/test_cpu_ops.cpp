// The CPU kernels against naive double-precision references, on fresh random inputs of many
// shapes (never zeros), with outputs poisoned first so that every element is shown written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/backend.h"
#include "runtime/env_switch.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

std::mt19937& rng() {
  static std::mt19937 r(std::random_device{}());
  return r;
}
std::vector<float> randn(size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}
std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

TEST(CpuLinear, MatchesDoubleReferenceOverShapes) {
  for (int64_t T : {1, 2, 3, 4, 5, 9, 33})
    for (int64_t N : {1, 2, 7, 64}) {
      for (int64_t K : {1, 7, 8, 9, 64, 200}) {
        auto x = randn(T * K), w = randn(N * K), b = randn(N);
        for (bool bias : {false, true}) {
          auto out = poisoned(T * N);
          cpu::linear(x.data(), w.data(), bias ? b.data() : nullptr, out.data(), T, N, K);
          // Each output against the exact sum, within the float32 bound for a sum of K + 1
          // terms in any order: (K + 1) u sum |terms| (u = 2^-24, doubled for margin). A norm-
          // relative bound fails by chance when a few outputs nearly cancel.
          for (int64_t m = 0; m < T; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double s = bias ? b[n] : 0.0, mag = bias ? std::fabs(b[n]) : 0.0;
              for (int64_t k = 0; k < K; ++k) {
                const double t = static_cast<double>(x[m * K + k]) * w[n * K + k];
                s += t;
                mag += std::fabs(t);
              }
              const float got = out[m * N + n];
              EXPECT_LE(std::fabs(got - s), double(K + 1) * 1.2e-7 * mag + 1e-30)
                  << "T=" << T << " N=" << N << " K=" << K << " bias=" << bias << " at (" << m << ", " << n << ")";
            }
        }
      }
    }
}

TEST(CpuNorm, RmsNormAndFusedResidual) {
  for (int64_t T : {1, 3, 17})
    for (int64_t H : {1, 64, 1000}) {
      auto x = randn(T * H, 3.f), w = randn(H), res = randn(T * H);
      auto out = poisoned(T * H);
      cpu::rms_norm(x.data(), w.data(), 1e-6f, out.data(), T, H);
      std::vector<double> ref(T * H), ref_fused(T * H), ref_res(T * H);
      for (int64_t t = 0; t < T; ++t) {
        double ss = 0, ss2 = 0;
        for (int64_t i = 0; i < H; ++i) {
          ss += double(x[t * H + i]) * x[t * H + i];
          ref_res[t * H + i] = double(x[t * H + i]) + res[t * H + i];
          ss2 += ref_res[t * H + i] * ref_res[t * H + i];
        }
        for (int64_t i = 0; i < H; ++i) {
          ref[t * H + i] = w[i] * x[t * H + i] / std::sqrt(ss / H + 1e-6);
          ref_fused[t * H + i] = w[i] * ref_res[t * H + i] / std::sqrt(ss2 / H + 1e-6);
        }
      }
      EXPECT_LT(rel_err(out, ref), 1e-6);
      cpu::add_rms_norm(x.data(), res.data(), w.data(), 1e-6f, T, H);
      EXPECT_LT(rel_err(x, ref_fused), 1e-6) << "normed output";
      EXPECT_LT(rel_err(res, ref_res), 1e-7) << "updated residual";
    }
}

TEST(CpuElementwise, SiluAndMulEmbeddingGather) {
  const int64_t T = 11, I = 37, V = 50, H = 24;
  auto gu = randn(T * 2 * I, 4.f);
  auto out = poisoned(T * I);
  cpu::silu_and_mul(gu.data(), out.data(), T, I);
  std::vector<double> ref(T * I);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < I; ++i) {
      const double g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
      ref[t * I + i] = g / (1 + std::exp(-g)) * u;
    }
  EXPECT_LT(rel_err(out, ref), 1e-6);

  auto table = randn(V * H);
  std::vector<int32_t> ids = {0, 49, 7, 7, 23};
  auto emb = poisoned(ids.size() * H);
  cpu::embedding(ids.data(), table.data(), emb.data(), ids.size(), V, H);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < H; ++i) ASSERT_EQ(emb[t * H + i], table[ids[t] * H + i]);

  std::vector<int32_t> rows = {4, 0, 2};
  auto g = poisoned(rows.size() * H);
  cpu::gather_rows(emb.data(), rows.data(), g.data(), rows.size(), ids.size(), H);
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t i = 0; i < H; ++i) ASSERT_EQ(g[r * H + i], emb[rows[r] * H + i]);
}

TEST(CpuRotary, QkNormRopeMatchesReference) {
  for (int d : {64, 128, 256})
    for (auto [nh, nkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{16, 2}}) {
      const int64_t T = 7, max_pos = 300, row = int64_t(nh + 2 * nkv) * d;
      auto qkv = randn(T * row, 2.f), qw = randn(d), kw = randn(d);
      std::vector<float> cs(max_pos * d);
      for (int64_t p = 0; p < max_pos; ++p)
        for (int i = 0; i < d / 2; ++i) {
          const double a = p * std::pow(10000.0, -2.0 * i / d);
          cs[p * d + i] = float(std::cos(a));
          cs[p * d + d / 2 + i] = float(std::sin(a));
        }
      std::vector<int32_t> pos = {0, 1, 5, 17, 100, 298, 299};
      std::vector<double> ref(qkv.begin(), qkv.end());
      for (int64_t t = 0; t < T; ++t)
        for (int h = 0; h < nh + nkv; ++h) {
          double* x = ref.data() + t * row + int64_t(h) * d;
          const float* w = h < nh ? qw.data() : kw.data();
          double ss = 0;
          for (int i = 0; i < d; ++i) ss += x[i] * x[i];
          for (int i = 0; i < d; ++i) x[i] = w[i] * x[i] / std::sqrt(ss / d + 1e-6);
          for (int i = 0; i < d / 2; ++i) {
            const double c = cs[pos[t] * d + i], s = cs[pos[t] * d + d / 2 + i];
            const double a = x[i], b = x[i + d / 2];
            x[i] = a * c - b * s;
            x[i + d / 2] = b * c + a * s;
          }
        }
      cpu::qk_norm_rope(qkv.data(), T, nh, nkv, d, qw.data(), kw.data(), 1e-6f, cs.data(), max_pos,
                        pos.data());
      EXPECT_LT(rel_err(qkv, ref), 1e-6) << "d=" << d << " nh=" << nh << " nkv=" << nkv;
    }
}

// Paged attention against dense causal attention over the same keys, with the blocks of each
// sequence scattered at random through the cache, and some of each sequence's keys already
// cached (a prefix hit or an earlier prefill chunk) so that queries start mid-sequence.
TEST(CpuAttention, PagedMatchesDenseCausalAttention) {
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8})
      for (int block_size : {1, 16, 256}) {
        const int nkv = 2, nh = nkv * group;
        const std::vector<int> q_lens = {1, 5, 17, 40}, cached = {0, 3, 16, 33};
        const int S = static_cast<int>(q_lens.size());
        std::vector<int32_t> cu{0}, ctx;
        int max_blocks = 0, total_blocks = 0;
        for (int s = 0; s < S; ++s) {
          cu.push_back(cu.back() + q_lens[s]);
          ctx.push_back(q_lens[s] + cached[s]);
          const int nb = (ctx.back() + block_size - 1) / block_size;
          max_blocks = std::max(max_blocks, nb);
          total_blocks += nb;
        }
        const int num_blocks = total_blocks + 3;  // spare blocks that nobody may read
        std::vector<int32_t> perm(num_blocks);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng());
        std::vector<int32_t> tables(S * max_blocks, -1);
        int next = 0;
        for (int s = 0; s < S; ++s)
          for (int b = 0; b < (ctx[s] + block_size - 1) / block_size; ++b) tables[s * max_blocks + b] = perm[next++];
        // Dense K/V per sequence, written into the cache: cached keys directly, new ones by store_kv.
        const int64_t kvw = int64_t(nkv) * d, row = int64_t(nh + 2 * nkv) * d, T = cu.back();
        auto kc = randn(int64_t(num_blocks) * block_size * kvw), vc = randn(int64_t(num_blocks) * block_size * kvw);
        auto qkv = randn(T * row);
        std::vector<std::vector<float>> K(S), Vv(S);
        std::vector<int32_t> slots;
        for (int s = 0; s < S; ++s) {
          K[s] = randn(int64_t(ctx[s]) * kvw);
          Vv[s] = randn(int64_t(ctx[s]) * kvw);
          for (int j = 0; j < ctx[s]; ++j) {
            const int64_t slot = int64_t(tables[s * max_blocks + j / block_size]) * block_size + j % block_size;
            if (j < cached[s]) {
              std::copy_n(K[s].begin() + j * kvw, kvw, kc.begin() + slot * kvw);
              std::copy_n(Vv[s].begin() + j * kvw, kvw, vc.begin() + slot * kvw);
            } else {
              const int64_t t = cu[s] + (j - cached[s]);
              std::copy_n(K[s].begin() + j * kvw, kvw, qkv.begin() + t * row + int64_t(nh) * d);
              std::copy_n(Vv[s].begin() + j * kvw, kvw, qkv.begin() + t * row + int64_t(nh) * d + kvw);
              slots.push_back(static_cast<int32_t>(slot));
            }
          }
        }
        cpu::store_kv(qkv.data(), T, nh, nkv, d, kc.data(), vc.data(), int64_t(num_blocks) * block_size, slots.data());
        auto out = poisoned(T * nh * d);
        const float scale = 1.f / std::sqrt(float(d));
        cpu::paged_attention(qkv.data(), nh, nkv, d, scale, kc.data(), vc.data(), block_size, num_blocks, S,
                             cu.data(), ctx.data(), tables.data(), max_blocks, out.data());
        std::vector<double> ref(T * nh * d);
        for (int s = 0; s < S; ++s)
          for (int i = 0; i < q_lens[s]; ++i)
            for (int h = 0; h < nh; ++h) {
              const int64_t t = cu[s] + i;
              const float* q = qkv.data() + t * row + int64_t(h) * d;
              const int visible = cached[s] + i + 1;
              std::vector<double> p(visible);
              double mx = -INFINITY, z = 0;
              for (int j = 0; j < visible; ++j) {
                double dot = 0;
                for (int c = 0; c < d; ++c) dot += double(q[c]) * K[s][j * kvw + (h / group) * d + c];
                p[j] = dot * scale;
                mx = std::max(mx, p[j]);
              }
              for (auto& x : p) z += (x = std::exp(x - mx));
              for (int c = 0; c < d; ++c) {
                double acc = 0;
                for (int j = 0; j < visible; ++j) acc += p[j] * Vv[s][j * kvw + (h / group) * d + c];
                ref[t * nh * d + h * d + c] = acc / z;
              }
            }
        EXPECT_LT(rel_err(out, ref), 1e-6) << "d=" << d << " group=" << group << " block=" << block_size;
      }
}

}  // namespace
}  // namespace nanovllm

namespace nanovllm {
namespace {

// A backend's empty() refuses shapes that cannot be allocated, naming the problem, instead of
// wrapping the byte count around (a malformed config.json could ask for such a shape).
TEST(CpuBackend, EmptyRejectsNegativeAndOverflowingShapes) {
  auto b = make_cpu_backend();
  EXPECT_EQ(b->empty({3, 5}, DType::F32).nbytes(), 60u);
  EXPECT_EQ(b->empty({0, 7}, DType::BF16).nbytes(), 0u);
  try {
    b->empty({4, -1}, DType::F32);
    ADD_FAILURE() << "a negative dimension was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("negative dimension"), std::string::npos) << e.what();
  }
  try {
    b->empty({int64_t{1} << 40, int64_t{1} << 40}, DType::F32);
    ADD_FAILURE() << "an overflowing shape was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nanovllm

namespace nanovllm {
namespace {

// The NANOVLLM_* switches: unset or empty keeps the default, "0" is off, anything else on.
TEST(EnvSwitch, UnsetEmptyZeroAndOn) {
  const char* name = "NANOVLLM_TEST_SWITCH_4242";
  unsetenv(name);
  EXPECT_TRUE(env_switch(name, true));
  EXPECT_FALSE(env_switch(name, false));
  setenv(name, "", 1);
  EXPECT_TRUE(env_switch(name, true));
  setenv(name, "0", 1);
  EXPECT_FALSE(env_switch(name, true));
  setenv(name, "1", 1);
  EXPECT_TRUE(env_switch(name, false));
  setenv(name, "yes", 1);
  EXPECT_TRUE(env_switch(name, false));
  unsetenv(name);
}

}  // namespace
}  // namespace nanovllm
