// Informational (no timed assertions): the decode products at batch 1-8, each variant of our
// GEMV (kernels/cuda/gemv.cu: k_split 1 and 4) and the backend's own pick (cuBLASLt's timed
// candidates or the GEMV), with cold weights, as a decode step sees them. A decode step reads
// each weight matrix once, and a model's matrices together far exceed L2, so every call here
// reads a copy of the matrix that the previous calls have pushed out of L2: the calls rotate
// over enough copies to pass 3x the L2 size. They run as one CUDA graph, with programmatic
// dependent launch as in the runner's graphs. docs/performance.md records the lines against
// the copy ceiling measured here.
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

}  // namespace
}  // namespace nanovllm
