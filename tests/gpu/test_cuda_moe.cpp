// The mixture-of-experts kernels (kernels/cuda/moe.cu) against the CPU reference, on fresh random
// inputs (the seed is printed) over many shapes: few and many experts (4 .. 128, k 1 .. 8), one
// row to several tiles per expert, sizes that leave partial tiles in N and K.
//
// - Routing: gpu::moe_route against cpu::moe_route on the same logits: the same experts in the
//   same order (ties included: logits drawn from a few values), weights within 1e-6.
// - The MLP: gpu::moe_mlp is given the router logits (the router's product is the backend's
//   linear, tested with the GEMMs), so both sides route alike; the reference computes each
//   chosen expert in float32 with the kernel's bf16 roundings (g, u, silu(g), act, y) mirrored,
//   then the float32 weighted sum. The output buffer is poisoned first (an unwritten element is
//   a NaN) and every buffer has guards that must stay untouched.
// - Every tile shape, forced and as picked for any step / a decode step, and the per-pair GEMV
//   (decode steps with few pairs), against the reference; the shapes that claim the same bits
//   give them: 16-row split-K tiles with 64- or 256-wide K-slices, and 64x64 or 128x128 tiles
//   (unsplit K).
// - A row's bits do not depend on the batch outside decode steps: each case's first row is
//   run again alone (which picks 64-row tiles where the batch may have picked 128).
// Without a GPU the tests are SKIPPED, except the argument checks.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

using test::DeviceBuf;
using test::Stream;

std::mt19937& rng() {
  static std::mt19937 gen = [] {
    const unsigned seed = std::random_device{}();
    std::printf("[ CudaMoe ] random seed %u\n", seed);
    return std::mt19937(seed);
  }();
  return gen;
}

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// n bf16 values ~ N(0, stddev): bits for the device, the same values as float for the reference.
struct Bf16Host {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};
Bf16Host random_bf16(size_t n, float stddev) {
  std::normal_distribution<float> dist(0.f, stddev);
  Bf16Host h{std::vector<uint16_t>(n), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) {
    h.bits[i] = f32_to_bf16(dist(rng()));
    h.f[i] = bf16_to_f32(h.bits[i]);
  }
  return h;
}
// Logits from `levels` values only (ties), or continuous when levels == 0.
Bf16Host random_logits(size_t n, int levels) {
  Bf16Host h = random_bf16(n, 1.5f);
  if (levels > 0) {
    std::uniform_int_distribution<int> pick(0, levels - 1);
    for (size_t i = 0; i < n; ++i) {
      h.f[i] = 0.5f * static_cast<float>(pick(rng()));
      h.bits[i] = f32_to_bf16(h.f[i]);
    }
  }
  return h;
}

struct Case {
  int64_t T, H, I;
  int E, k;
  bool renormalize;
};
std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " I=" + std::to_string(c.I) +
         " E=" + std::to_string(c.E) + " k=" + std::to_string(c.k) + (c.renormalize ? " renormalised" : "");
}

TEST(CudaMoe, RouteMatchesCpu) {
  REQUIRE_GPU();
  Stream stream;
  int cases = 0;
  for (const auto& [E, k] : std::vector<std::pair<int, int>>{{4, 2}, {6, 3}, {8, 2}, {60, 4}, {128, 8}, {512, 8}, {16, 16}, {1, 1}})
    for (int64_t T : {1, 5, 130})
      for (int levels : {0, 3})
        for (bool renorm : {false, true}) {
          SCOPED_TRACE("E=" + std::to_string(E) + " k=" + std::to_string(k) + " T=" + std::to_string(T) +
                       " levels=" + std::to_string(levels) + " renormalize=" + std::to_string(renorm));
          const Bf16Host logits = random_logits(size_t(T * E), levels);
          std::vector<int32_t> want_ids(size_t(T * k));
          std::vector<float> want_w(size_t(T * k));
          cpu::moe_route(logits.f.data(), T, E, k, renorm, want_ids.data(), want_w.data());
          DeviceBuf<uint16_t> d_logits(size_t(T * E));
          DeviceBuf<int32_t> d_ids(size_t(T * k));
          DeviceBuf<float> d_w(size_t(T * k));
          d_logits.upload(logits.bits);
          gpu::moe_route(d_logits.data(), T, E, k, renorm, d_ids.data(), d_w.data(), stream);
          stream.sync();
          const auto ids = d_ids.download();
          const auto w = d_w.download();
          EXPECT_EQ(d_ids.bad_guards() + d_w.bad_guards(), 0u);
          ASSERT_EQ(ids, want_ids);
          for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(w[i], want_w[i], 1e-6f * std::max(1.f, want_w[i])) << i;
          ++cases;
        }
  std::printf("[ CudaMoe ] moe_route: %d cases, experts and order equal to the CPU's\n", cases);
}

// cpu reference with the kernel's roundings: for row t, its choices (ids, w) from cpu::moe_route.
std::vector<float> reference(const Case& c, const std::vector<float>& x, const std::vector<float>& logits,
                             const std::vector<float>& gate_up, const std::vector<float>& down) {
  const int64_t H = c.H, I = c.I;
  std::vector<int32_t> ids(size_t(c.T * c.k));
  std::vector<float> w(static_cast<size_t>(c.T * c.k)), gu(static_cast<size_t>(2 * I)), act(static_cast<size_t>(I)),
      y(static_cast<size_t>(H)), out(static_cast<size_t>(c.T * H)), sum(static_cast<size_t>(H));
  cpu::moe_route(logits.data(), c.T, c.E, c.k, c.renormalize, ids.data(), w.data());
  for (int64_t t = 0; t < c.T; ++t) {
    std::fill(sum.begin(), sum.end(), 0.f);
    for (int j = 0; j < c.k; ++j) {
      const int e = ids[t * c.k + j];
      cpu::linear(&x[t * H], &gate_up[size_t(e) * 2 * I * H], nullptr, gu.data(), 1, 2 * I, H);
      for (int64_t i = 0; i < I; ++i) {
        const float g = round_bf16(gu[i]), u = round_bf16(gu[I + i]);
        act[i] = round_bf16(round_bf16(g / (1.f + std::exp(-g))) * u);
      }
      cpu::linear(act.data(), &down[size_t(e) * H * I], nullptr, y.data(), 1, H, I);
      for (int64_t h = 0; h < H; ++h) sum[h] += w[t * c.k + j] * round_bf16(y[h]);
    }
    for (int64_t h = 0; h < H; ++h) out[t * H + h] = round_bf16(sum[h]);
  }
  return out;
}

// Runs gpu::moe_mlp on rows [0, T) of the inputs; returns the output's bits.
std::vector<uint16_t> run_gpu(Stream& stream, const Case& c, int64_t T, bool decode, const Bf16Host& x,
                              const Bf16Host& logits, DeviceBuf<uint16_t>& d_gate_up, DeviceBuf<uint16_t>& d_down,
                              gpu::MoeTiles tiles = gpu::MoeTiles::kAuto) {
  DeviceBuf<uint16_t> d_x(size_t(T * c.H)), d_logits(size_t(T * c.E)), d_out(size_t(T * c.H));
  d_x.upload(std::vector<uint16_t>(x.bits.begin(), x.bits.begin() + T * c.H));
  d_logits.upload(std::vector<uint16_t>(logits.bits.begin(), logits.bits.begin() + T * c.E));
  const size_t bytes = gpu::moe_workspace_bytes(T, c.E, c.k, c.H, c.I, decode, tiles);
  DeviceBuf<unsigned char> ws(bytes);
  gpu::moe_mlp(d_x.data(), d_logits.data(), d_gate_up.data(), d_down.data(), d_out.data(), T, c.H, c.I, c.E, c.k,
               c.renormalize, decode, ws.data(), bytes, stream, tiles);
  stream.sync();
  auto out = d_out.download();
  ws.download();
  EXPECT_EQ(d_out.bad_guards(), 0u) << "output guards written";
  EXPECT_EQ(ws.bad_guards(), 0u) << "workspace guards written";
  return out;
}

TEST(CudaMoe, MlpMatchesCpuReference) {
  REQUIRE_GPU();
  Stream stream;
  const std::vector<Case> cases = {
      {1, 64, 48, 6, 3, false},      {7, 64, 160, 4, 2, true},     {33, 64, 48, 6, 3, false},
      {200, 128, 96, 8, 2, true},    {1, 256, 200, 128, 8, true},  {64, 256, 200, 128, 8, true},
      {300, 72, 136, 16, 1, false},  {513, 128, 64, 4, 4, false},  {5, 2048, 768, 16, 4, true},
      {130, 512, 1408, 8, 2, true},  {1000, 200, 136, 8, 2, false}, {2048, 256, 192, 32, 4, true},
      {3, 4096, 256, 4, 2, true},    {2, 256, 4096, 4, 2, false},  // K >= 4096: the long-slice decode tiles
  };
  double worst = 0;
  const bool sanitizing = std::getenv("NANOVLLM_GPU_SANITIZER") != nullptr;  // fewer, smaller cases
  for (const Case& c : cases) {
    if (sanitizing && (c.H * c.I > 256 * 4096 || c.T > 1000)) continue;
    SCOPED_TRACE(describe(c));
    const Bf16Host x = random_bf16(size_t(c.T * c.H), 1.f);
    const Bf16Host logits = random_logits(size_t(c.T * c.E), 0);
    // Weights ~ 1 / sqrt(fan-in) keep g, u and y of order one.
    const Bf16Host gate_up = random_bf16(size_t(c.E) * 2 * c.I * c.H, 1.f / std::sqrt(float(c.H)));
    const Bf16Host down = random_bf16(size_t(c.E) * c.H * c.I, 1.f / std::sqrt(float(c.I)));
    DeviceBuf<uint16_t> d_gate_up(gate_up.bits.size()), d_down(down.bits.size());
    d_gate_up.upload(gate_up.bits);
    d_down.upload(down.bits);
    const std::vector<float> ref = reference(c, x.f, logits.f, gate_up.f, down.f);
    // "any": what any step picks; "decode": what a pure decode step picks (split-K tiles for few
    // rows per expert); then each tile shape forced.
    struct Mode {
      const char* name;
      bool decode;
      gpu::MoeTiles tiles;
    };
    const Mode modes[] = {{"any", false, gpu::MoeTiles::kAuto},        {"decode", true, gpu::MoeTiles::kAuto},
                          {"16x32", true, gpu::MoeTiles::kSmallWide},  {"16x16K", true, gpu::MoeTiles::kSmallLong},
                          {"64x64", false, gpu::MoeTiles::kMedium},    {"128x128", false, gpu::MoeTiles::kLarge},
                          {"gemv", true, gpu::MoeTiles::kGemv}};
    constexpr int kModes = sizeof(modes) / sizeof(modes[0]);
    std::vector<uint16_t> outs[kModes];
    for (int mode = 0; mode < kModes; ++mode) {
      const bool decode = modes[mode].decode;
      SCOPED_TRACE(modes[mode].name);
      const std::vector<uint16_t>& out = outs[mode] =
          run_gpu(stream, c, c.T, decode, x, logits, d_gate_up, d_down, modes[mode].tiles);
      double num = 0, den = 0, worst_row = 0;
      int64_t bad = 0, nonfinite = 0;
      for (int64_t t = 0; t < c.T; ++t) {
        double rn = 0, rd = 0;
        for (int64_t h = 0; h < c.H; ++h) rd += double(ref[t * c.H + h]) * ref[t * c.H + h];
        const double rms = std::sqrt(rd / double(c.H));
        for (int64_t h = 0; h < c.H; ++h) {
          const double o = bf16_to_f32(out[t * c.H + h]), want = ref[t * c.H + h];
          if (!std::isfinite(o)) {
            ++nonfinite;
            continue;
          }
          rn += (o - want) * (o - want);
          // One bf16 ulp of the value, plus a few ulps of the row (an intermediate rounded the other way).
          if (std::abs(o - want) > std::ldexp(1.0, -7) * std::abs(want) + 2e-2 * rms) ++bad;
        }
        worst_row = std::max(worst_row, std::sqrt(rn / std::max(rd, 1e-30)));
        num += rn;
        den += rd;
      }
      const double rel = std::sqrt(num / den);
      EXPECT_EQ(nonfinite, 0);
      EXPECT_EQ(bad, 0);
      EXPECT_LT(rel, 5e-3);
      EXPECT_LT(worst_row, 2e-2);
      worst = std::max(worst, rel);
      std::printf("[ CudaMoe ] moe_mlp %-48s %-7s rel err %.2e (worst row %.2e)\n", describe(c).c_str(),
                  modes[mode].name, rel, worst_row);
    }
    // The bits the tile shapes share (docs/engine.md, "Batch invariance").
    EXPECT_TRUE(outs[2] == outs[3]) << "16-row tiles: 64- and 256-wide K-slices differ";
    EXPECT_TRUE(outs[4] == outs[5]) << "64x64 and 128x128 tiles differ";
    EXPECT_TRUE(outs[0] == outs[4]) << "any step's tiles differ from 64x64";
    // The first row alone, outside decode steps: the same bits (whatever tiles T picks).
    const std::vector<uint16_t> alone = run_gpu(stream, c, 1, false, x, logits, d_gate_up, d_down);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), outs[0].begin())) << "row 0 alone differs from row 0 in the batch";
  }
  std::printf("[ CudaMoe ] moe_mlp %zu cases, max rel err %.2e\n", cases.size(), worst);
}

// Informational: one MoE layer of Qwen3-30B-A3B (H 2048, I 768, 128 experts, 8 per token) and of
// Mixtral 8x7B (H 4096, I 14336, 8 experts, 2 per token) at several batch sizes, router logits
// given. Bytes: the weights of the experts the batch uses (each read once at best), the
// activations' round trips ignored; FLOPs: 6 H I per (row, expert). Fractions of the copy rate
// (NANOVLLM_BANDWIDTH_GBS, default 4,250 GB/s, H200) and the bf16 matmul rate
// (NANOVLLM_MATMUL_TFLOPS, default 920). Weights are a constant (values do not change timings).
TEST(CudaMoePerf, LayerTiming) {
  REQUIRE_GPU();
  if (std::getenv("NANOVLLM_GPU_SANITIZER")) GTEST_SKIP() << "no timings under compute-sanitizer";
  const double bw = std::getenv("NANOVLLM_BANDWIDTH_GBS") ? std::atof(std::getenv("NANOVLLM_BANDWIDTH_GBS")) : 4250;
  const double mm = std::getenv("NANOVLLM_MATMUL_TFLOPS") ? std::atof(std::getenv("NANOVLLM_MATMUL_TFLOPS")) : 920;
  Stream stream;
  struct Model {
    const char* name;
    int64_t H, I;
    int E, k;
  };
  for (const Model& m : {Model{"qwen3-30b-a3b", 2048, 768, 128, 8}, Model{"mixtral-8x7b", 4096, 14336, 8, 2}}) {
    const size_t expert_elems = size_t(3) * m.I * m.H;
    DeviceBuf<uint16_t> gate_up(size_t(m.E) * 2 * m.I * m.H), down(size_t(m.E) * m.H * m.I);
    NANOVLLM_CUDA_CHECK(cudaMemset(gate_up.data(), 0x3c, gate_up.bytes()));
    NANOVLLM_CUDA_CHECK(cudaMemset(down.data(), 0x3c, down.bytes()));
    for (int64_t T : {1, 2, 8, 32, 128, 512, 4096}) {
      const Bf16Host logits = random_logits(size_t(T * m.E), 0);
      std::vector<int32_t> ids(size_t(T * m.k));
      std::vector<float> w(ids.size());
      cpu::moe_route(logits.f.data(), T, m.E, m.k, true, ids.data(), w.data());
      std::vector<char> used(size_t(m.E), 0);
      for (int32_t e : ids) used[size_t(e)] = 1;
      const int64_t experts = std::count(used.begin(), used.end(), 1);
      DeviceBuf<uint16_t> x(size_t(T * m.H)), d_logits(size_t(T * m.E)), out(size_t(T * m.H));
      NANOVLLM_CUDA_CHECK(cudaMemset(x.data(), 0x3c, x.bytes()));
      d_logits.upload(logits.bits);
      const bool decode = T <= 256;  // the engine's decode batches; larger T: prefill
      const size_t bytes = gpu::moe_workspace_bytes(T, m.E, m.k, m.H, m.I, decode);
      DeviceBuf<unsigned char> ws(bytes);
      const auto call = [&] {
        gpu::moe_mlp(x.data(), d_logits.data(), gate_up.data(), down.data(), out.data(), T, m.H, m.I, m.E, m.k, true,
                     decode, ws.data(), bytes, stream);
      };
      for (int i = 0; i < 3; ++i) call();
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      const int reps = 20;
      cudaEventRecord(a, stream);
      for (int i = 0; i < reps; ++i) call();
      cudaEventRecord(b, stream);
      stream.sync();
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      cudaEventDestroy(a);
      cudaEventDestroy(b);
      const double us = 1e3 * ms / reps;
      const double wbytes = double(experts) * double(expert_elems) * 2;
      const double flops = 6.0 * double(T) * m.k * double(m.H) * double(m.I);
      const double floor_us = std::max(wbytes / (bw * 1e3), flops / (mm * 1e6));
      std::printf("[ CudaMoe ] %-14s %-7s T=%-5lld %3lld experts used: %8.1f us  weights %7.0f GB/s (%3.0f%%)  "
                  "%6.1f TFLOP/s (%3.0f%%)  roofline %6.1f us -> %3.0f%%\n",
                  m.name, decode ? "decode" : "prefill", (long long)T, (long long)experts, us, wbytes / us / 1e3, 100 * wbytes / us / 1e3 / bw,
                  flops / us / 1e6, 100 * flops / us / 1e6 / mm, floor_us, 100 * floor_us / us);
    }
  }
}

TEST(CudaMoeArgs, RejectedBeforeAnyLaunch) {
  // Host-side checks: no device memory is touched, so these run without a GPU too.
  auto p = reinterpret_cast<void*>(uintptr_t{256});
  const auto expect_error = [](auto fn, const char* what) {
    try {
      fn();
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("moe_"), std::string::npos) << e.what();
    }
  };
  expect_error([&] { gpu::moe_mlp(p, p, p, p, p, 4, 64, 48, 0, 1, false, false, p, 1 << 20, nullptr); }, "no experts");
  expect_error([&] { gpu::moe_mlp(p, p, p, p, p, 4, 64, 48, 4, 5, false, false, p, 1 << 20, nullptr); }, "k > E");
  expect_error([&] { gpu::moe_mlp(p, p, p, p, p, 4, 60, 48, 4, 2, false, false, p, 1 << 20, nullptr); }, "H % 8");
  expect_error([&] { gpu::moe_mlp(p, p, p, p, p, 4, 64, 48, 4, 2, false, false, p, 16, nullptr); }, "small workspace");
  expect_error([&] { gpu::moe_route(p, 4, 2000, 2, false, nullptr, nullptr, nullptr); }, "E > 1024");
  // What models ask when they are built (Backend::moe_unsupported).
  EXPECT_EQ(gpu::moe_unsupported(128, 8, 2048, 768), "");
  EXPECT_EQ(gpu::moe_unsupported(1024, 32, 8, 8), "");
  EXPECT_NE(gpu::moe_unsupported(1025, 8, 2048, 768).find("experts must be in [1, 1024]"), std::string::npos);
  EXPECT_NE(gpu::moe_unsupported(64, 33, 2048, 768).find("experts per token"), std::string::npos);
  EXPECT_NE(gpu::moe_unsupported(8, 2, 2048, 100).find("multiples of 8"), std::string::npos);
  expect_error([&] { gpu::moe_route(p, 4, 64, 33, false, static_cast<int32_t*>(p), static_cast<float*>(p), nullptr); },
               "k > 32");
}

}  // namespace
}  // namespace nanovllm
