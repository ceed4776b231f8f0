// Informational (no timed assertions): the decode products at batch 1-8, each variant of our
// GEMV (kernels/cuda/gemv.cu: k_split 1 and 4) and the backend's own pick (cuBLASLt's timed
// candidates or the GEMV), with cold weights, as a decode step sees them. A decode step reads
// each weight matrix once, and a model's matrices together far exceed L2, so every call here
// reads a copy of the matrix that the previous calls have pushed out of L2: the calls rotate
// over enough copies to pass 3x the L2 size. They run as one CUDA graph, with programmatic
// dependent launch as in the runner's graphs. docs/performance.md records the lines against
// the copy ceiling measured here.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "runtime/backend.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "gpu_test_util.h"

namespace nanovllm {
namespace {

// ms per launch of `launch(copy)` over one graph that calls it `rounds` times per copy.
float graph_ms(cudaStream_t s, int copies, int rounds, const std::function<void(int)>& launch) {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  NANOVLLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int r = 0; r < rounds; ++r)
    for (int c = 0; c < copies; ++c) launch(c);
  NANOVLLM_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  NANOVLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
  cudaEvent_t e0, e1;
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e0));
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e1));
  NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm
  float best = 1e30f;
  for (int t = 0; t < 3; ++t) {
    NANOVLLM_CUDA_CHECK(cudaEventRecord(e0, s));
    NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec, s));
    NANOVLLM_CUDA_CHECK(cudaEventRecord(e1, s));
    NANOVLLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    best = std::min(best, ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  return best / float(copies * rounds);
}

TEST(CudaGemmPerf, GemvTiming) {
  REQUIRE_GPU();
  if (std::getenv("NANOVLLM_GPU_SANITIZER")) GTEST_SKIP() << "no timings under compute-sanitizer";
  auto gpu = make_cuda_backend(0);
  const Ceilings ceil = gpu->measure_ceilings();
  int l2 = 0;
  NANOVLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  std::printf("[ CudaGemmPerf ] copy ceiling %.0f GB/s (read + write), L2 %d MB\n", ceil.bytes_per_s / 1e9, l2 >> 20);
  cudaStream_t s;
  NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  struct Shape {
    const char* name;
    int64_t N, K;
  };
  // Qwen3-8B (hidden 4096, 32/8 heads, intermediate 12288) and Qwen3-0.6B (1024, 16/8, 3072).
  const std::vector<Shape> shapes = {{"8B qkv", 6144, 4096},     {"8B o_proj", 4096, 4096},
                                     {"8B gate_up", 24576, 4096}, {"8B down", 4096, 12288},
                                     {"0.6B qkv", 4096, 1024},    {"0.6B o_proj", 1024, 2048},
                                     {"0.6B gate_up", 6144, 1024}, {"0.6B down", 1024, 3072}};
  for (const Shape& sh : shapes)
    for (int64_t M : {int64_t{1}, int64_t{2}, int64_t{8}}) {
      const double bytes = 2.0 * sh.N * sh.K;
      const int copies = std::max<int>(3, static_cast<int>(3.0 * l2 / bytes) + 1);
      const int rounds = std::max(1, 60 / copies);
      std::vector<Tensor> w;
      for (int c = 0; c < copies; ++c) {
        w.push_back(gpu->empty({sh.N, sh.K}, DType::BF16));
        NANOVLLM_CUDA_CHECK(cudaMemset(w.back().data(), 0x3c, static_cast<size_t>(bytes)));
      }
      Tensor x = gpu->empty({M, sh.K}, DType::BF16), out = gpu->empty({M, sh.N}, DType::BF16);
      NANOVLLM_CUDA_CHECK(cudaMemset(x.data(), 0x3c, M * sh.K * 2));
      std::string line;
      auto report = [&](const std::string& label, float ms) {
        char b[96];
        std::snprintf(b, sizeof b, " %s %.2f us (%.0f%%)", label.c_str(), ms * 1e3,
                      100.0 * bytes / (ms * 1e-3) / ceil.bytes_per_s);
        line += b;
      };
      for (int k_split : {1, 4}) {
        const float ms = graph_ms(s, copies, rounds, [&](int c) {
          gpu::gemv(x.data(), w[c].data(), nullptr, out.data(), M, sh.N, sh.K, s, k_split);
        });
        report("gemv k" + std::to_string(k_split), ms);
      }
      {  // the backend's pick for this decode shape (planned on the first call, outside the graph)
        gpu->begin_step(true);
        gpu->linear(x, w[0], nullptr, out);
        gpu->synchronize();
        const int launches = std::max(rounds * copies, 200);  // amortises the host's wait below
        auto graph = gpu->capture([&] {
          for (int i = 0; i < launches; ++i) gpu->linear(x, w[i % copies], nullptr, out);
        });
        ASSERT_TRUE(graph);
        graph->replay();
        gpu->synchronize();
        double best = 1e30;
        for (int t = 0; t < 3; ++t) {  // wall time: the backend's stream is its own
          const auto t0 = std::chrono::steady_clock::now();
          graph->replay();
          gpu->synchronize();
          best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        gpu->end_step();
        report("pick", static_cast<float>(best / launches));
      }
      std::printf("[ CudaGemmPerf ] %-12s M=%lld %6.1f MB x%d:%s\n", sh.name, static_cast<long long>(M), bytes / 1e6,
                  copies, line.c_str());
    }
  cudaStreamDestroy(s);
}

// Whether cuBLASLt has faster products for decode-size batches (M = 64-256) than the ones its
// heuristic offers (which the autotuner times, up to 24 of them): every algorithm id's tiles,
// stages and CTA swizzles (no split-K, no cluster choice) checked with cublasLtMatmulAlgoCheck
// and timed as GemvTiming does (cold weights, one graph). Informational, for deciding whether
// a wider search, or a kernel of our own, could speed up bench.py's products.
TEST(CudaGemmPerf, CublasLtSearch) {
  REQUIRE_GPU();
  if (std::getenv("NANOVLLM_GPU_SANITIZER")) GTEST_SKIP() << "no timings under compute-sanitizer";
  int l2 = 0;
  NANOVLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  cudaStream_t s;
  NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cublasLtHandle_t h;
  ASSERT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
  const size_t ws_bytes = size_t(32) << 20;
  void* ws = nullptr;
  NANOVLLM_CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
  int ids[256], n_ids = 0;
  ASSERT_EQ(cublasLtMatmulAlgoGetIds(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF,
                                     CUDA_R_16BF, 256, ids, &n_ids),
            CUBLAS_STATUS_SUCCESS);
  std::printf("[ CudaGemmPerf ] cuBLASLt search: %d algorithm ids\n", n_ids);
  struct Shape {
    const char* name;
    int64_t N, K;
  };
  const std::vector<Shape> shapes = {{"0.6B qkv", 4096, 1024}, {"0.6B o_proj", 1024, 2048},
                                     {"0.6B gate_up", 6144, 1024}, {"0.6B down", 1024, 3072}};
  for (const Shape& sh : shapes)
    for (int64_t M : {int64_t{64}, int64_t{128}, int64_t{256}}) {
      const double bytes = 2.0 * sh.N * sh.K;
      const int copies = std::max<int>(3, static_cast<int>(3.0 * l2 / bytes) + 1);
      const int rounds = std::max(1, 40 / copies);
      std::vector<void*> w(copies);
      for (auto& p : w) {
        NANOVLLM_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
        NANOVLLM_CUDA_CHECK(cudaMemset(p, 0x3c, static_cast<size_t>(bytes)));
      }
      void *x = nullptr, *out = nullptr;
      NANOVLLM_CUDA_CHECK(cudaMalloc(&x, M * sh.K * 2));
      NANOVLLM_CUDA_CHECK(cudaMalloc(&out, M * sh.N * 2));
      NANOVLLM_CUDA_CHECK(cudaMemset(x, 0x3c, M * sh.K * 2));
      cublasLtMatmulDesc_t op;
      cublasLtMatrixLayout_t a, b, c;
      ASSERT_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
      cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, sh.K, sh.N, sh.K);
      cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, sh.K, M, sh.K);
      cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, sh.N, M, sh.N);
      const float one = 1.f, zero = 0.f;
      auto time_algo = [&](const cublasLtMatmulAlgo_t& algo) -> float {
        auto run = [&](int cp) {
          return cublasLtMatmul(h, op, &one, w[cp], a, x, b, &zero, out, c, out, c, &algo, ws, ws_bytes, s) ==
                 CUBLAS_STATUS_SUCCESS;
        };
        if (!run(0) || cudaStreamSynchronize(s) != cudaSuccess) {
          cudaGetLastError();
          return -1;
        }
        return graph_ms(s, copies, rounds, [&](int cp) { run(cp); });
      };
      auto describe = [](const cublasLtMatmulAlgo_t& algo) {
        int id = 0, tile = 0, stages = 0, splits = 0, swz = 0, custom = 0, cluster = 0;
        size_t wr = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof(id), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof(swz), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom, sizeof(custom), &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof(cluster),
                                             &wr);
        char buf[128];
        std::snprintf(buf, sizeof buf, "id %d tile %d stages %d splitk %d swizzle %d custom %d cluster %d", id, tile,
                      stages, splits, swz, custom, cluster);
        return std::string(buf);
      };
      // The heuristic's candidates, as the autotuner sees them.
      cublasLtMatmulPreference_t pref;
      cublasLtMatmulPreferenceCreate(&pref);
      const uint64_t wsb = ws_bytes;
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb));
      std::vector<cublasLtMatmulHeuristicResult_t> hr(24);
      int found = 0;
      cublasLtMatmulAlgoGetHeuristic(h, op, a, b, c, c, pref, 24, hr.data(), &found);
      cublasLtMatmulPreferenceDestroy(pref);
      float h_best = -1;
      std::string h_desc;
      for (int i = 0; i < found; ++i) {
        if (hr[i].state != CUBLAS_STATUS_SUCCESS) continue;
        const float ms = time_algo(hr[i].algo);
        if (ms > 0 && (h_best < 0 || ms < h_best)) h_best = ms, h_desc = describe(hr[i].algo);
      }
      // The enumerated space.
      float e_best = -1;
      std::string e_desc;
      int tried = 0, valid = 0;
      for (int k = 0; k < n_ids && tried < 600; ++k) {
        cublasLtMatmulAlgo_t algo;
        if (cublasLtMatmulAlgoInit(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF,
                                   CUDA_R_16BF, ids[k], &algo) != CUBLAS_STATUS_SUCCESS)
          continue;
        size_t wr = 0;
        std::vector<int> tiles(128), stages(128);
        cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_TILE_IDS, nullptr, 0, &wr);
        tiles.resize(std::max<size_t>(1, wr / sizeof(int)));
        if (wr) cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_TILE_IDS, tiles.data(), wr, &wr);
        else tiles = {0};
        cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_STAGES_IDS, nullptr, 0, &wr);
        stages.resize(std::max<size_t>(1, wr / sizeof(int)));
        if (wr) cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_STAGES_IDS, stages.data(), wr, &wr);
        else stages = {0};
        int swz_ok = 0;
        cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT, &swz_ok, sizeof(swz_ok), &wr);
        for (int tile : tiles)
          for (int st : stages)
            for (int swz = 0; swz <= swz_ok && tried < 600; ++swz) {
              cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile));
              cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &st, sizeof(st));
              cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof(swz));
              cublasLtMatmulHeuristicResult_t r{};
              if (cublasLtMatmulAlgoCheck(h, op, a, b, c, c, &algo, &r) != CUBLAS_STATUS_SUCCESS ||
                  r.workspaceSize > ws_bytes)
                continue;
              ++tried;
              const float ms = time_algo(algo);
              if (ms <= 0) continue;
              ++valid;
              if (e_best < 0 || ms < e_best) e_best = ms, e_desc = describe(algo);
            }
      }
      std::printf("[ CudaGemmPerf ] search %-12s M=%-3lld heuristic best %.2f us (%s) | enumerated best %.2f us "
                  "(%s; %d timed of %d checked)\n",
                  sh.name, static_cast<long long>(M), h_best * 1e3, h_desc.c_str(), e_best * 1e3, e_desc.c_str(),
                  valid, tried);
      cublasLtMatrixLayoutDestroy(a);
      cublasLtMatrixLayoutDestroy(b);
      cublasLtMatrixLayoutDestroy(c);
      cublasLtMatmulDescDestroy(op);
      for (void* p : w) cudaFree(p);
      cudaFree(x);
      cudaFree(out);
    }
  cudaFree(ws);
  cublasLtDestroy(h);
  cudaStreamDestroy(s);
}

}  // namespace
}  // namespace nanovllm
