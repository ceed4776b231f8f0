// The CUDA backend end to end: cuBLASLt products against the CPU reference, every fixture model's
// logits against transformers, real-size models (when the device script made them) against
// transformers' bf16 forward on the same GPU, and the engine's greedy output unchanged by CUDA
// graphs and by prefix caching. Skipped where there is no GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "../test_util.h"
#include "engine/llm_engine.h"
#include "engine/prompt_logits.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "loader/model_config.h"
#include "loader/safetensors.h"
#include "models/model.h"
#include "nanovllm/llm.h"
#include "runtime/backend.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "gpu_test_util.h"

namespace nanovllm {
namespace {

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;

uint32_t test_seed() {
  static const uint32_t seed = std::random_device{}();
  return seed;
}

using test::floats;
using test::ints;
using test::rel_error;

// ---- matrix products against the CPU's float32 product of the same bf16 values ----
// Random bf16 x (M, K), w (N, K) and bias (N,) on the device, out poisoned with NaN (every
// element must be written); `product` fills out. Every element must be within one bf16
// rounding plus float32 summation-order noise of the CPU's product; returns the relative error.
using Product = std::function<void(Tensor& x, Tensor& w, Tensor* bias, Tensor& out)>;
double check_product(Backend& gpu, std::mt19937& rng, int M, int N, int K, bool with_bias, const Product& product) {
  std::normal_distribution<float> nd(0.f, 1.f);
  auto make = [&](int64_t n, float scale) {
    std::vector<uint16_t> b(n);
    std::vector<float> f(n);
    for (int64_t i = 0; i < n; ++i) {
      b[i] = f32_to_bf16(nd(rng) * scale);
      f[i] = bf16_to_f32(b[i]);
    }
    return std::make_pair(b, f);
  };
  auto [xb, xf] = make(int64_t{M} * K, 1.f);
  auto [wb, wf] = make(int64_t{N} * K, 1.f / std::sqrt(float(K)));
  auto [bb, bf] = make(N, 1.f);
  Tensor x = gpu.empty({M, K}, DType::BF16), w = gpu.empty({N, K}, DType::BF16);
  Tensor b = gpu.empty({N}, DType::BF16), out = gpu.empty({M, N}, DType::BF16);
  gpu.copy_from_host(x, xb.data(), xb.size() * 2);
  gpu.copy_from_host(w, wb.data(), wb.size() * 2);
  gpu.copy_from_host(b, bb.data(), bb.size() * 2);
  std::vector<uint16_t> poison(size_t(M) * N, 0x7fc1);
  gpu.copy_from_host(out, poison.data(), poison.size() * 2);
  product(x, w, with_bias ? &b : nullptr, out);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> got(size_t(M) * N);
  gpu.copy_to_host(got.data(), out, got.size() * 2);
  std::vector<float> ref(size_t(M) * N), gotf(got.size());
  cpu::linear(xf.data(), wf.data(), with_bias ? bf.data() : nullptr, ref.data(), M, N, K);
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    gotf[i] = bf16_to_f32(got[i]);
    if (!(std::fabs(gotf[i] - ref[i]) <= std::fabs(ref[i]) * (1.f / 128) + 1e-3f * std::sqrt(float(K)) / 8)) ++bad;
  }
  const double rel = rel_error(gotf.data(), ref.data(), ref.size());
  EXPECT_EQ(bad, 0u) << "M=" << M << " N=" << N << " K=" << K << " bias=" << with_bias;
  EXPECT_LT(rel, 4e-3) << "M=" << M << " N=" << N << " K=" << K;
  return rel;
}

// cuBLASLt through the backend.
TEST(CudaGemm, LinearMatchesCpu) {
  REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  std::mt19937 rng(test_seed());
  std::printf("[ CudaGemm ] random seed %u\n", test_seed());
  double worst = 0;
  for (auto [M, N, K, bias] : std::vector<std::tuple<int, int, int, bool>>{
           {1, 64, 64, false}, {3, 1024, 1024, false}, {17, 4096, 1024, true}, {128, 3072, 1024, false},
           {257, 1024, 3072, true}, {1, 151936, 1024, false}, {512, 2048, 2048, false}, {33, 96, 200, true}})
    worst = std::max(worst, check_product(*gpu, rng, M, N, K, bias, [&](Tensor& x, Tensor& w, Tensor* b, Tensor& out) {
      gpu->linear(x, w, b, out);
    }));
  std::printf("[ CudaGemm ] linear max rel err %.3e\n", worst);
}

// The small-batch kernel decode steps may pick over cuBLASLt.
TEST(CudaGemm, SmallBatchGemvMatchesCpu) {
  REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  std::mt19937 rng(test_seed() + 2);
  double worst = 0;
  for (auto [N, K, bias] : std::vector<std::tuple<int, int, bool>>{
           {1, 8, false}, {3, 8, true}, {77, 200, true}, {64, 64, false}, {1000, 1024, false}, {4096, 1024, true},
           {1024, 3072, false}, {513, 4104, false}, {2048, 12288, false}})
    for (int k_split : {1, 4})  // one warp per row pair, and four (each a quarter of K)
      for (int M = 1; M <= gpu::kGemvMaxRows; ++M)
        worst = std::max(worst, check_product(*gpu, rng, M, N, K, bias, [&](Tensor& x, Tensor& w, Tensor* b, Tensor& out) {
          ASSERT_TRUE(gpu::gemv_supported(M, N, K, x.data(), w.data(), b ? b->data() : nullptr, out.data()));
          gpu::gemv(x.data(), w.data(), b ? b->data() : nullptr, out.data(), M, N, K, nullptr, k_split);
        }));
  EXPECT_FALSE(gpu::gemv_supported(9, 64, 64, nullptr, nullptr, nullptr, nullptr));
  EXPECT_FALSE(gpu::gemv_supported(1, 64, 12, nullptr, nullptr, nullptr, nullptr));
  std::printf("[ CudaGemm ] small-batch gemv max rel err %.3e\n", worst);
}

// The GEMV's fused variants (decode steps of 1, 2, 4, 8 rows): the norm in front of the
// product, SiLU-and-multiply or a residual add behind it. Without the norm they must give the
// bits of the unfused kernels (gemv then silu_and_mul; gemv then add_rms_norm's residual
// update); with it, the CPU's product of the exactly normed x (the fused kernel does not round
// the normed x to bf16, so it is at least as close to it as rms_norm then gemv).
TEST(CudaGemm, FusedGemvVariants) {
  REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  std::mt19937 rng(test_seed() + 3);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto upload = [&](std::vector<float>& f, int64_t rows, int64_t cols, float scale, float mean) {
    std::vector<uint16_t> b(static_cast<size_t>(rows * cols));
    f.resize(b.size());
    for (size_t i = 0; i < b.size(); ++i) {
      b[i] = f32_to_bf16(mean + nd(rng) * scale);
      f[i] = bf16_to_f32(b[i]);
    }
    Tensor t = gpu->empty({rows, cols}, DType::BF16);
    gpu->copy_from_host(t, b.data(), b.size() * 2);
    return t;
  };
  auto bits = [&](const Tensor& t) {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
    gpu->copy_to_host(h.data(), t, h.size() * 2);
    return h;
  };
  auto floats_of = [&](const Tensor& t) {
    std::vector<float> f;
    for (uint16_t v : bits(t)) f.push_back(bf16_to_f32(v));
    return f;
  };
  // got vs ref within `rel` of |ref| plus float32 summation noise; returns the relative error.
  auto close = [&](const std::vector<float>& got, const std::vector<float>& ref, float rel, int K, const char* what,
                   int M, int N, int k_split) {
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      if (!(std::fabs(got[i] - ref[i]) <= std::fabs(ref[i]) * rel + 1e-3f * std::sqrt(float(K)) / 8)) ++bad;
    EXPECT_EQ(bad, 0u) << what << " M=" << M << " N=" << N << " K=" << K << " k_split " << k_split;
    return rel_error(got.data(), ref.data(), ref.size());
  };
  const float eps = 1e-6f;
  double worst_norm = 0, worst_silu = 0;
  int cases = 0;
  for (auto [N, K, with_bias] : std::vector<std::tuple<int, int, bool>>{
           {1, 8, false}, {3, 64, true}, {77, 200, true}, {1024, 1024, false}, {4096, 1024, true},
           {1536, 2048, false}, {1024, 3072, false}, {513, 4104, false}})
    for (int k_split : {1, 4})
      for (int M : {1, 2, 4, 8}) {
        ASSERT_TRUE(gpu::gemv_fused_rows(M));
        std::vector<float> xf, gf, wf, bf, rf, unused;
        Tensor x = upload(xf, M, K, 3.f, 0.f);          // a raw residual row: far from unit rms
        Tensor g = upload(gf, 1, K, 0.3f, 1.f);         // the norm's weight
        Tensor w = upload(wf, 2 * N, K, 1.f / std::sqrt(float(K)), 0.f);  // gate rows, then up rows
        Tensor b = upload(bf, 1, 2 * N, 1.f, 0.f);
        Tensor r = upload(rf, M, N, 1.f, 0.f);          // a residual to add into
        const void* bias = with_bias ? b.data() : nullptr;
        std::vector<float> xn(xf.size()), y(static_cast<size_t>(M) * 2 * N);
        cpu::rms_norm(xf.data(), gf.data(), eps, xn.data(), M, K);
        cpu::linear(xn.data(), wf.data(), with_bias ? bf.data() : nullptr, y.data(), M, 2 * N, K);
        Tensor out = gpu->empty({M, N}, DType::BF16), tmp = gpu->empty({M, 2 * N}, DType::BF16);

        // norm + product (the first N rows of w)
        gpu::gemv_fused(x.data(), w.data(), bias, out.data(), M, N, K, nullptr, k_split, g.data(), eps,
                        gpu::GemvEpilogue::kStore);
        std::vector<float> ref(static_cast<size_t>(M) * N);
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) ref[size_t(m) * N + n] = y[size_t(m) * 2 * N + n];
        worst_norm = std::max(worst_norm, close(floats_of(out), ref, 1.f / 128, K, "norm", M, N, k_split));

        // norm + product + SiLU(gate) * up
        gpu::gemv_fused(x.data(), w.data(), bias, out.data(), M, N, K, nullptr, k_split, g.data(), eps,
                        gpu::GemvEpilogue::kSiluMul);
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            const float gate = y[size_t(m) * 2 * N + n], up = y[size_t(m) * 2 * N + N + n];
            ref[size_t(m) * N + n] = gate / (1.f + std::exp(-gate)) * up;
          }
        worst_silu = std::max(worst_silu, close(floats_of(out), ref, 1.f / 32, K, "norm+silu", M, N, k_split));

        // SiLU without the norm: the bits of gemv then silu_and_mul
        Tensor act = gpu->empty({M, N}, DType::BF16);
        gpu::gemv(x.data(), w.data(), bias, tmp.data(), M, 2 * N, K, nullptr, k_split);
        gpu::silu_and_mul(tmp.data(), act.data(), M, N, nullptr);
        gpu::gemv_fused(x.data(), w.data(), bias, out.data(), M, N, K, nullptr, k_split, nullptr, 0.f,
                        gpu::GemvEpilogue::kSiluMul);
        EXPECT_EQ(bits(out), bits(act)) << "silu M=" << M << " N=" << N << " K=" << K << " k_split " << k_split;

        // residual += product: the bits of gemv then add_rms_norm's residual update
        Tensor r2 = gpu->empty({M, N}, DType::BF16), y1 = gpu->empty({M, N}, DType::BF16);
        const std::vector<uint16_t> r0 = bits(r);
        gpu->copy_from_host(r2, r0.data(), r0.size() * 2);
        gpu::gemv(x.data(), w.data(), bias, y1.data(), M, N, K, nullptr, k_split);
        Tensor gN = upload(unused, 1, N, 0.3f, 1.f);
        gpu::add_rms_norm(y1.data(), r.data(), gN.data(), eps, M, N, nullptr);
        gpu::gemv_fused(x.data(), w.data(), bias, r2.data(), M, N, K, nullptr, k_split, nullptr, 0.f,
                        gpu::GemvEpilogue::kAddInto);
        EXPECT_EQ(bits(r2), bits(r)) << "add M=" << M << " N=" << N << " K=" << K << " k_split " << k_split;
        ++cases;
      }
  // Refused: row counts off the ladder, and a normed input with the add.
  std::vector<float> f;
  Tensor x = upload(f, 3, 64, 1.f, 0.f), w = upload(f, 64, 64, 1.f, 0.f), o = upload(f, 3, 64, 1.f, 0.f);
  EXPECT_THROW(gpu::gemv_fused(x.data(), w.data(), nullptr, o.data(), 3, 64, 64, nullptr, 1, nullptr, 0.f,
                               gpu::GemvEpilogue::kAddInto),
               Error);
  EXPECT_THROW(gpu::gemv_fused(x.data(), w.data(), nullptr, o.data(), 2, 64, 64, nullptr, 1, w.data(), 1e-6f,
                               gpu::GemvEpilogue::kAddInto),
               Error);
  std::printf("[ CudaGemm ] fused gemv: %d cases; max rel err vs the exactly normed product %.3e, with SiLU %.3e\n",
              cases, worst_norm, worst_silu);
}

// The backend's fused ops: offered only inside decode steps of ladder sizes, and right there.
TEST(CudaGemm, FusedOpsThroughTheBackend) {
  REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  std::mt19937 rng(test_seed() + 4);
  std::normal_distribution<float> nd(0.f, 1.f);
  EXPECT_FALSE(gpu->fuses_norm_linear(1, 1024, {1024}));  // outside a step
  gpu->begin_step(false);
  EXPECT_FALSE(gpu->fuses_norm_linear(1, 1024, {1024}));  // a prefill step
  gpu->end_step();
  const int N = 384, K = 256, I = 320;
  auto fill = [&](int64_t rows, int64_t cols, float scale, float mean) {
    std::vector<uint16_t> h(static_cast<size_t>(rows * cols));
    for (auto& v : h) v = f32_to_bf16(mean + nd(rng) * scale);
    Tensor t = gpu->empty({rows, cols}, DType::BF16);
    gpu->copy_from_host(t, h.data(), h.size() * 2);
    return t;
  };
  Tensor w = fill(N, K, 0.06f, 0.f), wgu = fill(2 * I, K, 0.06f, 0.f), wd = fill(K, I, 0.05f, 0.f);
  Tensor g = fill(1, K, 0.2f, 1.f), bias = fill(1, N, 1.f, 0.f);
  Tensor gv = g.reshape({K});
  Tensor bv = bias.reshape({N});
  for (int M : {1, 2, 4, 8}) {
    // Long-lived tensors (made outside the step: the step arena is not sized here).
    Tensor x = fill(M, K, 2.f, 0.f);
    Tensor out = gpu->empty({M, N}, DType::BF16), ref = gpu->empty({M, N}, DType::BF16);
    Tensor normed = gpu->empty({M, K}, DType::BF16);
    Tensor act = gpu->empty({M, I}, DType::BF16), act_ref = gpu->empty({M, I}, DType::BF16);
    Tensor scratch = gpu->empty({M, 2 * I}, DType::BF16);
    Tensor res = fill(M, K, 1.f, 0.f);
    Tensor res_ref = gpu->empty({M, K}, DType::BF16), y = gpu->empty({M, K}, DType::BF16);
    Tensor y2 = gpu->empty({M, K}, DType::BF16);
    EXPECT_EQ(cudaMemcpy(res_ref.data(), res.data(), res.numel() * 2, cudaMemcpyDeviceToDevice), cudaSuccess);
    gpu->begin_step(true);
    EXPECT_TRUE(gpu->fuses_norm_linear(M, K, {K, I}));
    EXPECT_FALSE(gpu->fuses_norm_linear(M + (M == 1 ? 2 : 1), K, {K, I})) << "M " << M;
    EXPECT_FALSE(gpu->fuses_norm_linear(M, K, {K, 12}));  // K not a multiple of 8
    if (!std::getenv("NANOVLLM_FUSE_NORM_LINEAR")) {  // auto: not past the width limit
      EXPECT_FALSE(gpu->fuses_norm_linear(M, 4096, {4096, 12288}));
    }
    gpu->rms_norm_linear(x, gv, 1e-6f, w, &bv, out);
    gpu->rms_norm(x, gv, 1e-6f, normed);
    gpu->linear(normed, w, &bv, ref);
    gpu->rms_norm_linear_silu(x, gv, 1e-6f, wgu, act, scratch);
    gpu->linear(normed, wgu, nullptr, scratch);
    gpu->silu_and_mul(scratch, act_ref);
    gpu->linear_add(act_ref, wd, nullptr, res, y);
    gpu->linear(act_ref, wd, nullptr, y2);
    gpu->add_rms_norm(y2, res_ref, gv, 1e-6f);
    gpu->synchronize();
    auto host = [&](const Tensor& t) {
      std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
      gpu->copy_to_host(h.data(), t, h.size() * 2);
      std::vector<float> f;
      for (uint16_t v : h) f.push_back(bf16_to_f32(v));
      return f;
    };
    // Against the unfused ops (which may run cuBLASLt): bf16 roundings apart, no more.
    const std::vector<float> o = host(out), o_ref = host(ref), a = host(act), a_ref = host(act_ref);
    EXPECT_LT(rel_error(o.data(), o_ref.data(), o.size()), 1e-2) << "rms_norm_linear M " << M;
    EXPECT_LT(rel_error(a.data(), a_ref.data(), a.size()), 2e-2) << "rms_norm_linear_silu M " << M;
    const std::vector<float> rr = host(res), rr_ref = host(res_ref);
    EXPECT_LT(rel_error(rr.data(), rr_ref.data(), rr.size()), 1e-2) << "linear_add M " << M;
    EXPECT_THROW(gpu->linear_add(act_ref, wd, nullptr, res, res), Error);  // scratch aliasing the residual
    gpu->end_step();
  }
  Tensor x3 = fill(3, K, 1.f, 0.f), o3 = gpu->empty({3, N}, DType::BF16);
  gpu->begin_step(true);
  EXPECT_THROW(gpu->rms_norm_linear(x3, gv, 1e-6f, w, nullptr, o3), Error);  // 3 rows: not a ladder size
  gpu->end_step();
}

// ---- a row's bits must not depend on how many rows share the product ----
// Outside decode steps every product of one weight shape runs one algorithm (cublaslt_gemm.h),
// so a prompt's K/V and logits are the same whether it is prefilled alone, with others, or
// after a prefix-cache hit. Checked bitwise for tiny and real shapes.
TEST(CudaGemm, RowsIndependentOfRowCount) {
  REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  std::mt19937 rng(test_seed() + 1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [N, K, bias] : std::vector<std::tuple<int, int, bool>>{
           {64, 64, false}, {96, 200, true}, {192, 64, false}, {64, 128, false}, {512, 64, false},
           {4096, 1024, false}, {1024, 3072, false}, {12288, 2048, false}, {2048, 6144, false}}) {
    const int big = 700;
    auto fill = [&](Tensor& t, float scale) {
      std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
      for (auto& v : h) v = f32_to_bf16(nd(rng) * scale);
      gpu->copy_from_host(t, h.data(), h.size() * 2);
    };
    Tensor x = gpu->empty({big, K}, DType::BF16), w = gpu->empty({N, K}, DType::BF16);
    Tensor b = gpu->empty({N}, DType::BF16), out = gpu->empty({big, N}, DType::BF16);
    fill(x, 1.f);
    fill(w, 1.f / std::sqrt(float(K)));
    fill(b, 1.f);
    gpu->linear(x, w, bias ? &b : nullptr, out);
    std::vector<uint16_t> ref(size_t(big) * N);
    gpu->copy_to_host(ref.data(), out, ref.size() * 2);
    for (int M : {1, 2, 3, 16, 17, 64, 100, 255, 256, 511}) {
      Tensor xm = x.rows(0, M), om = gpu->empty({M, N}, DType::BF16);
      gpu->linear(xm, w, bias ? &b : nullptr, om);
      std::vector<uint16_t> got(size_t(M) * N);
      gpu->copy_to_host(got.data(), om, got.size() * 2);
      size_t diff = 0;
      for (size_t i = 0; i < got.size(); ++i) diff += got[i] != ref[i];
      EXPECT_EQ(diff, 0u) << "N=" << N << " K=" << K << " bias=" << bias << ": the first " << M
                          << " rows differ from the same rows of a " << big << "-row product";
    }
  }
}

// ---- whole models against transformers ----
// A random-weight model amplifies rounding: transformers' own bf16 forward flips the argmax of
// its float32 forward at 5-8% of positions on real sizes (make-real-models.py prints it). So
// our bf16 logits are judged against the exact answer (transformers' float32 forward of the
// same weights) and must be no further from it than transformers' bf16 forward is, with the
// issue's 2e-2 as the bound where transformers' bf16 is closer than that. Real sizes are also
// judged against transformers' bf16 (sdpa) logits directly, with the bar set by transformers'
// eager attention on the same weights: on an H200 (2026-11-28) eager vs sdpa is rel 1.56e-2 /
// argmax 96.3% (0.6B) and 3.83e-2 / 91.9% (1.7B), so the literal "99% of argmaxes"
// is not met by transformers against itself.
struct Reference {
  std::vector<std::vector<int32_t>> prompts, generated;
  std::vector<std::vector<float>> logits, logits_f32;  // transformers in the checkpoint dtype / f32
  // transformers' bf16 forward through its eager attention (real sizes only): a second correct
  // bf16 implementation, whose distance from `logits` (sdpa) is how closely two bf16 forwards
  // of the same weights can agree.
  std::vector<std::vector<float>> logits_eager;
};

Reference load_reference(const std::filesystem::path& file) {
  const TensorMap t = load_safetensors_file(file);
  Reference r;
  for (int i = 0; t.count("prompt." + std::to_string(i)); ++i) {
    const std::string k = std::to_string(i);
    r.prompts.push_back(ints(t.at("prompt." + k)));
    r.logits.push_back(floats(t.at("logits." + k)));
    r.logits_f32.push_back(t.count("logits_f32." + k) ? floats(t.at("logits_f32." + k)) : r.logits.back());
    if (t.count("generate." + k)) r.generated.push_back(ints(t.at("generate." + k)));
    if (t.count("logits_eager." + k)) r.logits_eager.push_back(floats(t.at("logits_eager." + k)));
  }
  return r;
}

struct Distance {
  double rel = 0, agree = 0;  // relative L2 error, fraction of positions with the same argmax
  size_t rows = 0;
};

Distance distance(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b, int64_t V) {
  double num = 0, den = 0;
  size_t same = 0, rows = 0;
  for (size_t s = 0; s < b.size(); ++s) {
    EXPECT_EQ(a[s].size(), b[s].size());
    const size_t n = std::min(a[s].size(), b[s].size());
    for (size_t i = 0; i < n; ++i) {
      const double d = double(a[s][i]) - b[s][i];
      num += d * d;
      den += double(b[s][i]) * b[s][i];
    }
    for (size_t r = 0; r < n / V; ++r, ++rows) {
      auto x = a[s].begin() + r * V, y = b[s].begin() + r * V;
      same += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
    }
  }
  return {std::sqrt(num / den), double(same) / double(std::max<size_t>(rows, 1)), rows};
}

void check_model(const std::filesystem::path& model_dir, const Reference& ref, const std::string& label) {
  auto backend = make_cuda_backend(0);
  auto model = load_model(model_dir, *backend);
  const PromptLogits out = prompt_logits(*model, *backend, ref.prompts, 16);
  const int64_t V = out.vocab_size;
  const Distance ours_hf = distance(out.logits, ref.logits, V);
  const Distance ours_f32 = distance(out.logits, ref.logits_f32, V);
  const Distance hf_f32 = distance(ref.logits, ref.logits_f32, V);
  std::printf("[ CudaEngine ] %s (%zu positions): ours vs transformers: rel %.3e, argmax %.2f%% | vs its f32: "
              "ours rel %.3e argmax %.2f%%, transformers' own rel %.3e argmax %.2f%%\n",
              label.c_str(), ours_hf.rows, ours_hf.rel, ours_hf.agree * 100, ours_f32.rel, ours_f32.agree * 100,
              hf_f32.rel, hf_f32.agree * 100);
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    // Also each prompt alone: a sequence's logits must not depend on its batch.
    const PromptLogits alone = prompt_logits(*model, *backend, {ref.prompts[i]}, 16);
    const Distance o = distance({out.logits[i]}, {ref.logits_f32[i]}, V), h = distance({ref.logits[i]}, {ref.logits_f32[i]}, V);
    const Distance a = distance({alone.logits[0]}, {ref.logits_f32[i]}, V);
    std::printf("[ CudaEngine ]   prompt %zu (%zu tokens) vs f32: ours rel %.3e argmax %.2f%% (alone: rel %.3e argmax "
                "%.2f%%), transformers' bf16 rel %.3e argmax %.2f%%\n",
                i, ref.prompts[i].size(), o.rel, o.agree * 100, a.rel, a.agree * 100, h.rel, h.agree * 100);
  }
  EXPECT_LT(ours_f32.rel, std::max(2e-2, 1.1 * hf_f32.rel)) << label;
  if (hf_f32.rel < 5e-3) {
    // A float32 or float16 checkpoint: transformers' forward in the checkpoint's dtype is exact
    // (f32) or far more precise than bf16 (f16: rel ~1.5e-3 on the fixture), so it shows no
    // bf16 noise floor to compare with; we compute in bf16, which flips near-ties (H200,
    // 2026-11-28: 59 and 60 of 63 argmaxes kept by the f16 and f32 fixtures, each flip 1.6%).
    EXPECT_GE(ours_f32.agree, 0.9) << label;
    return;
  }
  // Slack of 1% of the positions (at least one): near-ties go either way for either
  // implementation, independently.
  const double slack = std::max(0.01, 1.0 / double(std::max<size_t>(ours_f32.rows, 1)));
  EXPECT_GE(ours_f32.agree + slack + 1e-9, std::min(0.99, hf_f32.agree)) << label;
  if (ref.logits_eager.size() == ref.logits.size()) {
    // Against transformers' bf16 forward itself (the comparison), with the bar its own
    // eager attention sets: no further from its sdpa logits than its eager logits are.
    const Distance eager_hf = distance(ref.logits_eager, ref.logits, V);
    std::printf("[ CudaEngine ] %s: vs transformers' bf16 (sdpa): ours rel %.3e argmax %.2f%%, transformers' bf16 "
                "eager rel %.3e argmax %.2f%%\n",
                label.c_str(), ours_hf.rel, ours_hf.agree * 100, eager_hf.rel, eager_hf.agree * 100);
    EXPECT_LT(ours_hf.rel, std::max(2e-2, 1.1 * eager_hf.rel)) << label;
    EXPECT_GE(ours_hf.agree + slack + 1e-9, std::min(0.99, eager_hf.agree)) << label;
  }
}

class CudaFixtureLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaFixtureLogits, MatchTransformers) {
  REQUIRE_GPU();
  const std::string name = GetParam();
  check_model(kFixtures / "models" / name, load_reference(kFixtures / "reference" / (name + ".safetensors")),
              "fixture " + name);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixtureLogits,
                         ::testing::Values("qwen3-tied-bf16-g1-d128-bin-sharded", "qwen3-tied-bf16-g4-d64",
                                           "qwen3-tied-f32-g2-d64", "qwen3-tied-f32-g2-d64-bias",
                                           "qwen3-untied-bf16-g2-d128-sharded", "qwen3-untied-f16-g2-d64",
                                           "qwen3-untied-f32-g1-d128-sharded", "qwen3-untied-f32-g4-d64-bin",
                                           "llama-untied-f32-g2-d64-rope3", "llama-tied-bf16-g4-d64",
                                           "qwen2-tied-bf16-g2-d64", "mistral-untied-f32-g4-d64-swa",
                                           "mixtral-untied-f32-e4k2", "qwen3moe-untied-f32-e6k3"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return s;
                         });

// Real-size models made on the GPU machine by scripts/device/make-real-models.py:
// NANOVLLM_REAL_MODELS=dir1:dir2, each dir holding the model and reference.safetensors.
std::vector<std::string> real_models() {
  std::vector<std::string> out;
  const char* env = std::getenv("NANOVLLM_REAL_MODELS");
  if (!env) return out;
  std::stringstream ss(env);
  for (std::string d; std::getline(ss, d, ':');)
    if (!d.empty()) out.push_back(d);
  return out;
}

int64_t vocab_of(const std::string& model_dir) { return load_model_config(model_dir).vocab_size; }

// Layer by layer against the CPU backend, which computes in float32 (as transformers' float32
// forward does, to ~1e-6): where the bf16 error grows, and which op grows it. Diagnostic output
// for precision work; it asserts only that every activation is finite and near the reference.
std::map<std::string, std::vector<float>> tapped_activations(Backend& b, CausalLM& model,
                                                             const std::vector<int32_t>& prompt) {
  std::map<std::string, std::vector<float>> out;
  model.set_tap([&](const char* name, int layer, const Tensor& t) {
    std::vector<float> f(static_cast<size_t>(t.numel()));
    if (t.dtype() == DType::F32) {
      b.copy_to_host(f.data(), t, f.size() * 4);
    } else {
      std::vector<uint16_t> raw(f.size());
      b.copy_to_host(raw.data(), t, raw.size() * 2);
      convert_to_f32(t.dtype(), reinterpret_cast<const char*>(raw.data()), f.data(), f.size());
    }
    char key[64];
    std::snprintf(key, sizeof key, "%03d %s", layer + 1, name);  // final norm sorts first, as layer 0
    out[key] = std::move(f);
  });
  const PromptLogits logits = prompt_logits(model, b, {prompt}, 16);
  model.set_tap({});
  out["999 logits"] = logits.logits[0];
  return out;
}

TEST(CudaRealSize, LayerByLayerAgainstCpu) {
  REQUIRE_GPU();
  const auto dirs = real_models();
  if (dirs.empty()) GTEST_SKIP() << "NANOVLLM_REAL_MODELS not set (scripts/gpu-check sets it on the GPU machine)";
  for (const std::string& d : dirs) {
    const Reference ref = load_reference(std::filesystem::path(d) / "reference.safetensors");
    std::vector<int32_t> prompt = ref.prompts.back();  // the longest: error grows with position
    std::map<std::string, std::vector<float>> gpu_acts, cpu_acts;
    {
      auto gpu = make_cuda_backend(0);
      auto model = load_model(d, *gpu);
      gpu_acts = tapped_activations(*gpu, *model, prompt);
    }
    {
      auto cpu = make_cpu_backend();
      auto model = load_model(d, *cpu);
      cpu_acts = tapped_activations(*cpu, *model, prompt);
    }
    ASSERT_EQ(gpu_acts.size(), cpu_acts.size());
    {
      const Distance c = distance({cpu_acts.at("999 logits")}, {ref.logits_f32.back()}, vocab_of(d));
      const Distance g = distance({gpu_acts.at("999 logits")}, {ref.logits_f32.back()}, vocab_of(d));
      std::printf("[ CudaRealSize ] vs transformers' f32 logits: CPU f32 rel %.3e argmax %.2f%%, CUDA rel %.3e argmax "
                  "%.2f%%\n",
                  c.rel, c.agree * 100, g.rel, g.agree * 100);
    }
    std::printf("[ CudaRealSize ] %s, %zu tokens: relative L2 error of each activation, CUDA bf16 vs CPU f32\n",
                d.c_str(), prompt.size());
    std::string line;
    int layer = -2;
    for (const auto& [key, g] : gpu_acts) {
      const std::vector<float>& c = cpu_acts.at(key);
      ASSERT_EQ(g.size(), c.size()) << key;
      const double rel = rel_error(g.data(), c.data(), g.size());
      EXPECT_TRUE(std::isfinite(rel) && rel < 0.25) << key << ": rel " << rel;
      const int l = std::atoi(key.c_str());
      if (l != layer && !line.empty()) {
        std::printf("  %s\n", line.c_str());
        line.clear();
      }
      layer = l;
      char cell[64];
      if (line.empty()) line = key.substr(0, 3) + ":";
      std::snprintf(cell, sizeof cell, " %s %.2e", key.c_str() + 4, rel);
      line += cell;
    }
    std::printf("  %s\n", line.c_str());
    // Where along the sequence: the error of a few activations over ranges of positions.
    const size_t T = prompt.size();
    for (const char* key : {"001 attn", "001 down", "002 attn", "014 attn", "028 attn", "028 down", "999 logits"}) {
      if (!gpu_acts.count(key)) continue;  // fewer layers (Llama 3.2 1B has 16)
      const std::vector<float>&g = gpu_acts.at(key), &c = cpu_acts.at(key);
      const size_t width = g.size() / T;
      std::string cells;
      for (size_t b0 : {size_t{0}, size_t{16}, size_t{64}, size_t{128}, size_t{256}}) {
        const size_t b1 = std::min(T, b0 == 0 ? 16 : b0 * 2);
        if (b0 >= T) break;
        char cell[64];
        std::snprintf(cell, sizeof cell, " [%zu,%zu) %.2e", b0, b1,
                      rel_error(g.data() + b0 * width, c.data() + b0 * width, (b1 - b0) * width));
        cells += cell;
      }
      std::printf("  by position, %s:%s\n", key, cells.c_str());
    }
  }
}

TEST(CudaRealSize, LogitsMatchTransformers) {
  REQUIRE_GPU();
  const auto dirs = real_models();
  if (dirs.empty()) GTEST_SKIP() << "NANOVLLM_REAL_MODELS not set (scripts/gpu-check sets it on the GPU machine)";
  for (const std::string& d : dirs)
    check_model(d, load_reference(std::filesystem::path(d) / "reference.safetensors"), "real-size " + d);
}

// ---- engine invariance ----
SamplingParams greedy(int n) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

Config cuda_config(bool eager, bool prefix) {
  Config c;
  c.backend = "cuda";
  c.enforce_eager = eager;
  c.enable_prefix_caching = prefix;
  c.kvcache_block_size = 16;
  c.max_num_seqs = 64;
  // Every prompt fits the first step, so prefix caching changes only which prompt tokens are
  // recomputed, not the schedule. With chunked prefill the schedules differ, and a decode row
  // that shares a step with a prefill chunk runs the prefill kernels: bits may then differ
  // (docs/engine.md, "Batch invariance").
  c.max_num_batched_tokens = 8192;
  c.max_model_len = 1024;
  c.gpu_memory_utilization = 0.5;
  return c;
}

// Prompts sharing prefixes (so the prefix cache hits), of odd lengths crossing blocks.
std::vector<Prompt> invariance_prompts(int64_t vocab, int n) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> shared(40);
  for (auto& t : shared) t = tok(rng);
  std::vector<Prompt> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(shared.begin(), shared.begin() + (i % 2 ? 40 : 33));
    for (int k = 0; k < 3 + 7 * i; ++k) p.push_back(tok(rng));
    out.push_back(p);
  }
  return out;
}

std::vector<std::vector<int32_t>> run_twice(const std::string& model, const Config& c, const std::vector<Prompt>& prompts,
                                            int max_tokens, size_t* graphs) {
  LLM llm(model, c);
  *graphs = llm.engine().runner().num_graphs();
  std::vector<std::vector<int32_t>> out;
  for (int round = 0; round < 2; ++round)  // the second round hits the prefix cache, if on
    for (const auto& r : llm.generate(prompts, greedy(max_tokens))) {
      EXPECT_TRUE(r.error.empty()) << r.error;
      out.push_back(r.token_ids);
    }
  EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks()) << "KV blocks leaked";
  return out;
}

void check_invariance(const std::string& model, int64_t vocab, int n, int max_tokens) {
  const auto prompts = invariance_prompts(vocab, n);
  size_t g_graph = 0, g_eager = 0, g_noprefix = 0;
  const auto with_graphs = run_twice(model, cuda_config(false, true), prompts, max_tokens, &g_graph);
  const auto eager = run_twice(model, cuda_config(true, true), prompts, max_tokens, &g_eager);
  const auto no_prefix = run_twice(model, cuda_config(false, false), prompts, max_tokens, &g_noprefix);
  EXPECT_GT(g_graph, 0u) << "no CUDA graphs were captured";
  EXPECT_EQ(g_eager, 0u);
  EXPECT_EQ(with_graphs, eager) << model << ": CUDA graphs changed the greedy output";
  EXPECT_EQ(with_graphs, no_prefix) << model << ": prefix caching changed the greedy output";
  for (size_t i = n; i < with_graphs.size(); ++i)  // a cached rerun gives the same tokens
    EXPECT_EQ(with_graphs[i], with_graphs[i - n]) << model << " prompt " << i - n;
  std::printf("[ CudaEngine ] invariance %s: %d prompts x %d tokens, %zu graphs: graphs vs eager %s, prefix on vs "
              "off %s\n",
              model.c_str(), n, max_tokens, g_graph, with_graphs == eager ? "equal" : "DIFFER",
              with_graphs == no_prefix ? "equal" : "DIFFER");
}

TEST(CudaEngine, GreedyInvariantToGraphsAndPrefixCaching) {
  REQUIRE_GPU();
  check_invariance((kFixtures / "models" / "qwen3-untied-bf16-g2-d128-sharded").string(), 512, 12, 40);
  // Mixtures of experts: device-side routing inside the graphs, rows grouped by expert.
  for (const char* moe : {"mixtral-untied-f32-e4k2", "qwen3moe-untied-f32-e6k3"})
    check_invariance((kFixtures / "models" / moe).string(), 512, 12, 40);
  for (const std::string& d : real_models()) check_invariance(d, vocab_of(d), 24, 48);
}

// max_num_seqs below max_num_batched_tokens / max_model_len (batch-1 serving): the runner's
// memory-profiling step used to run ceil(8192 / 1024) = 8 sequences, more than one step may
// hold, and the engine refused to start ("exceeds the runner's capacity"). One sequence at a
// time must start, and give the tokens of the batched run (decode is batch invariant; every
// prompt here prefills in one step).
TEST(CudaEngine, OneSequenceAtATime) {
  REQUIRE_GPU();
  const std::string model = (kFixtures / "models" / "qwen3-untied-bf16-g2-d128-sharded").string();
  std::vector<Prompt> prompts;
  std::mt19937 gen(7);
  std::uniform_int_distribution<int32_t> tok(0, 511);
  for (int n : {5, 40, 300}) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& t : ids) t = tok(gen);
    prompts.push_back(ids);
  }
  std::vector<std::vector<int32_t>> outs[2];
  for (int one = 0; one < 2; ++one) {
    Config c = cuda_config(false, false);
    if (one) c.max_num_seqs = 1;
    LLM llm(model, c);
    for (const auto& o : llm.generate(prompts, greedy(20))) outs[one].push_back(o.token_ids);
  }
  ASSERT_EQ(outs[1].size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(outs[1][i].size(), 20u) << "prompt " << i;
    EXPECT_EQ(outs[1][i], outs[0][i]) << "prompt " << i << ": one at a time vs batched";
  }
}

// The engine's greedy output against transformers' generate() on the fixtures. bf16 (ours and
// theirs) may part ways after a near-tie, so this counts agreement and requires the first
// token of each prompt to match, unless the reference's two best logits at the prompt's end
// are within bf16 noise (2% of the row's rms; our logits are ~1% off transformers' float32):
// seen with the Mixtral fixture's 1-token prompt, 0.0083 apart at rms 0.79.
TEST(CudaEngine, GreedyAgainstTransformersGenerate) {
  REQUIRE_GPU();
  for (const char* name : {"qwen3-tied-bf16-g4-d64", "qwen3-untied-bf16-g2-d128-sharded", "qwen3-tied-f32-g2-d64",
                           "llama-tied-bf16-g4-d64", "llama-untied-f32-g2-d64-rope3", "qwen2-tied-bf16-g2-d64",
                           "mistral-untied-f32-g4-d64-swa", "mixtral-untied-f32-e4k2", "qwen3moe-untied-f32-e6k3"}) {
    const Reference ref = load_reference(kFixtures / "reference" / (std::string(name) + ".safetensors"));
    ASSERT_FALSE(ref.generated.empty());
    Config c = cuda_config(false, true);
    LLM llm((kFixtures / "models" / name).string(), c);
    std::vector<Prompt> prompts(ref.prompts.begin(), ref.prompts.end());
    SamplingParams p = greedy(static_cast<int>(ref.generated[0].size()));
    p.ignore_eos = false;
    const auto out = llm.generate(prompts, p);
    size_t same = 0, total = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_FALSE(out[i].token_ids.empty());
      const std::vector<float>& l = ref.logits_f32[i];
      const int64_t V = static_cast<int64_t>(l.size()) / static_cast<int64_t>(ref.prompts[i].size());
      std::vector<float> last(l.end() - V, l.end());
      double ss = 0;
      for (float v : last) ss += double(v) * v;
      std::partial_sort(last.begin(), last.begin() + 2, last.end(), std::greater<float>());
      if (last[0] - last[1] < 0.02 * std::sqrt(ss / double(V)))
        std::printf("[ CudaEngine ] %s prompt %zu: first token not required (a near-tie: top two %.4f apart)\n", name, i,
                    double(last[0] - last[1]));
      else
        EXPECT_EQ(out[i].token_ids[0], ref.generated[i][0]) << name << " prompt " << i;
      size_t k = 0;
      while (k < out[i].token_ids.size() && k < ref.generated[i].size() && out[i].token_ids[k] == ref.generated[i][k]) ++k;
      same += k;
      total += ref.generated[i].size();
    }
    std::printf("[ CudaEngine ] %s: greedy tokens equal to transformers' generate before first divergence: %zu/%zu\n",
                name, same, total);
  }
}

// Asynchronous scheduling (step n + 1 queued before step n's tokens reach the host, its
// pending ids filled on the device by the graphs) gives the synchronous engine's outputs:
// greedy and seeded sampling, logprobs and penalties (which make the engine collect first),
// with CUDA graphs and eager. Batched, the requests stop by length only, so both engines run
// the same schedule (a request that stops on a sampled token gets one more step when async,
// which can move the others to another ladder size and GEMM plan: docs/engine.md, "Batch
// invariance"); stops on sampled tokens, whose extra step is dropped, run one request at a time.
//
// Both engines take cuBLASLt's heuristic GEMM picks (NANOVLLM_GEMM_AUTOTUNE=0): the autotuner
// times candidates per engine, and two engines may pick products with different summation
// orders for the same shape (seen: equal tokens, logprobs 1e-3 apart, in 5 of ~200 positions).
TEST(CudaEngine, AsyncSchedulingGivesTheSynchronousOutputs) {
  REQUIRE_GPU();
  struct UntunedGemms {
    UntunedGemms() { setenv("NANOVLLM_GEMM_AUTOTUNE", "0", 1); }
    ~UntunedGemms() { unsetenv("NANOVLLM_GEMM_AUTOTUNE"); }
  } untuned;
  std::vector<std::string> models = {(kFixtures / "models" / "qwen3-untied-bf16-g2-d128-sharded").string()};
  for (const std::string& d : real_models()) models.push_back(d);
  for (const std::string& model : models) {
    const int64_t vocab = vocab_of(model);
    const auto prompts = invariance_prompts(vocab, 16);
    for (bool one_at_a_time : {false, true}) {
      std::vector<SamplingParams> params;
      for (size_t i = 0; i < prompts.size(); ++i) {
        SamplingParams p;
        p.max_tokens = 8 + static_cast<int>(i % 13);
        p.temperature = i % 3 == 0 ? 0.0 : 0.8;
        p.top_p = i % 4 == 1 ? 0.9 : 1.0;
        p.seed = 77 + i;
        p.logprobs = static_cast<int>(i % 3);
        p.ignore_eos = true;
        // Many stop ids, an eighth of the vocabulary (64 of the fixtures' 512; at a real model's
        // 128k-152k tokens, 64 ids were never sampled): these stop on a sampled token.
        if (one_at_a_time && i % 2 == 0)
          for (int64_t k = 0; k < vocab / 8; ++k)
            p.stop_token_ids.push_back(static_cast<int32_t>((i * 131 + k * 8) % vocab));
        if (i % 5 == 3) p.repetition_penalty = 1.2;
        params.push_back(p);
      }
      for (bool eager : {false, true}) {
        std::vector<RequestOutput> outs[2];
        for (int async = 0; async < 2; ++async) {
          Config c = cuda_config(eager, true);
          c.async_scheduling = async ? "on" : "off";
          if (one_at_a_time) c.max_num_seqs = 1;
          LLM llm(model, c);
          outs[async] = llm.generate(prompts, params);
          EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks()) << "KV blocks leaked";
        }
        int stopped = 0, differ = 0;
        for (size_t i = 0; i < prompts.size(); ++i) {
          const RequestOutput &a = outs[0][i], &b = outs[1][i];
          EXPECT_TRUE(a.error.empty() && b.error.empty()) << a.error << b.error;
          EXPECT_EQ(a.token_ids, b.token_ids) << model << (eager ? " eager" : " graphs") << " prompt " << i;
          EXPECT_EQ(a.finish_reason, b.finish_reason) << "prompt " << i;
          differ += a.token_ids != b.token_ids;
          ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
          for (size_t k = 0; k < a.logprobs.size(); ++k) {
            EXPECT_EQ(a.logprobs[k].logprob, b.logprobs[k].logprob);
            EXPECT_EQ(a.logprobs[k].top, b.logprobs[k].top);
          }
          stopped += a.finish_reason == "stop";
        }
        if (one_at_a_time) {
          EXPECT_GT(stopped, 0) << "no request stopped on a sampled token";
        }
        std::printf("[ CudaEngine ] async scheduling, %s, %s, %s: %zu requests, %d stopped on a sampled token, "
                    "%d outputs differ\n",
                    model.c_str(), eager ? "eager" : "graphs", one_at_a_time ? "one at a time" : "batched",
                    prompts.size(), stopped, differ);
      }
    }
  }
}

}  // namespace
}  // namespace nanovllm
