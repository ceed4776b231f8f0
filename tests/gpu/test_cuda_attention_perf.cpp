// Informational timings of the paged attention kernels at realistic sizes (printed, not
// asserted; skipped under compute-sanitizer). scripts/device/*.sh collect the lines.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "read_ceiling.h"
#include "runtime/cuda/cublaslt_gemm.h"

namespace nanovllm {
namespace {

using namespace attention_test;

// ---- Timings (informational) ----

// Fills a big device buffer with random bf16 by copying one random 8 MiB piece over it.
void fill_random(uint16_t* dst, size_t n) {
  const size_t piece = std::min<size_t>(n, size_t(4) << 20);
  const Bf16Host h = random_bf16(piece, 1.f);
  NANOVLLM_CUDA_CHECK(cudaMemcpy(dst, h.bits.data(), piece * 2, cudaMemcpyHostToDevice));
  for (size_t done = piece; done < n; done += piece)
    NANOVLLM_CUDA_CHECK(cudaMemcpy(dst + done, dst, std::min(piece, n - done) * 2, cudaMemcpyDeviceToDevice));
}

// Median time of `reps` launches, each between its own pair of events, after warm-up.
template <typename F>
double median_ms(cudaStream_t stream, int reps, F&& launch) {
  for (int i = 0; i < 3; ++i) launch();
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) NANOVLLM_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < reps; ++i) {
    NANOVLLM_CUDA_CHECK(cudaEventRecord(ev[2 * i], stream));
    launch();
    NANOVLLM_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], stream));
  }
  NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

size_t count_nonfinite(DeviceBuf<uint16_t>& buf) {
  const std::vector<uint16_t> h = buf.download();
  return size_t(std::count_if(h.begin(), h.end(), [](uint16_t b) { return !std::isfinite(bf16_to_f32(b)); }));
}

// Decode with Qwen3-0.6B's heads (16 query / 8 KV, d = 128) and blocks of 256 (scattered):
// `ctx` lists each sequence's context, `bound` is the max_context_len passed. Inputs that fit
// in L2 would be timed from L2, so the launches rotate over enough disjoint copies of the
// cache (other block ids) to stream at least 256 MB between two reads of the same bytes.
struct DecodeBench {
  static constexpr int nh = 16, nkv = 8, d = 128, bs = 256;
  struct Layout {
    int width = 1, sets = 1;
    int64_t set_blocks = 0, num_blocks = 0, cache = 0;
    explicit Layout(const std::vector<int>& ctx) {
      for (int c : ctx) {
        set_blocks += (c + bs - 1) / bs;
        width = std::max(width, (c + bs - 1) / bs);
      }
      const int64_t set_bytes = 2 * set_blocks * bs * nkv * d * 2;
      sets = int(std::min<int64_t>(16, std::max<int64_t>(1, ((int64_t(256) << 20) + set_bytes - 1) / set_bytes)));
      num_blocks = set_blocks * sets;
      cache = num_blocks * bs * nkv * d;
    }
  };
  std::vector<int> ctx;
  int n, bound;
  Layout lay;
  int width = lay.width, sets = lay.sets;
  int64_t num_blocks = lay.num_blocks, cache = lay.cache;
  DeviceBuf<uint16_t> qkv{size_t(n) * (nh + 2 * nkv) * d}, kc{size_t(cache)}, vc{size_t(cache)},
      out{size_t(n) * nh * d};
  DeviceBuf<int32_t> tables{size_t(sets) * n * width}, lens{size_t(n)};

  DecodeBench(const std::vector<int>& contexts, int max_context_len)
      : ctx(contexts), n(int(contexts.size())), bound(max_context_len), lay(contexts) {
    fill_random(qkv.data(), size_t(n) * (nh + 2 * nkv) * d);
    fill_random(kc.data(), size_t(cache));
    fill_random(vc.data(), size_t(cache));
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng());
    std::vector<int32_t> tables_h(size_t(sets) * n * width, -1);
    size_t next = 0;
    for (int r = 0; r < sets; ++r)
      for (int s = 0; s < n; ++s)
        for (int i = 0; i < (ctx[s] + bs - 1) / bs; ++i) tables_h[(size_t(r) * n + s) * width + i] = ids[next++];
    tables.upload(tables_h);
    lens.upload(ctx);
  }
  const int32_t* table(int launch) { return tables.data() + size_t(launch % sets) * n * width; }
  double keys() const { return std::accumulate(ctx.begin(), ctx.end(), 0.0); }
  double kv_bytes() const { return 4.0 * keys() * nkv * d; }

  // The kernel: two launches (split, then combine) or one (the combine in the split kernel, the
  // engine's way at <= 8 sequences, kCombineInSplitKernelMaxSeqs in cuda_backend.cpp).
  double time_kernel(Stream& stream, bool one_kernel) {
    const size_t ws_bytes = gpu::paged_attention_decode_workspace_bytes(n, nh, nkv, d, bound);
    DeviceBuf<float> ws(ws_bytes / sizeof(float));
    DeviceBuf<int32_t> counters(gpu::paged_attention_decode_counters(n, nh, nkv));
    NANOVLLM_CUDA_CHECK(cudaMemset(counters.data(), 0, counters.bytes()));
    const float scale = 1.f / std::sqrt(float(d));
    int launches = 0;
    const double ms = median_ms(stream, 50, [&] {
      gpu::paged_attention_decode(qkv.data(), nh, nkv, d, scale, kc.data(), vc.data(), bs, num_blocks, n,
                                  lens.data(), table(launches++), width, bound, out.data(), ws.data(), ws.bytes(),
                                  stream, one_kernel ? counters.data() : nullptr);
    });
    EXPECT_EQ(count_nonfinite(out), 0u);
    return ms;
  }
};

// Returns the time of the variant the engine runs (one kernel at <= 8 sequences).
double time_decode(Stream& stream, const std::vector<int>& ctx, int bound, const char* label) {
  DecodeBench b(ctx, bound);
  double engine_ms = 0;
  for (bool one_kernel : {false, true}) {
    const double ms = b.time_kernel(stream, one_kernel);
    const double bytes = b.kv_bytes() + double(b.n) * b.nh * b.d * 2 * 2;  // K, V, q, out
    const double flops = 4.0 * b.nh * b.keys() * b.d;
    std::printf("[ CudaAttention ] timing decode  %s, %d/%d heads, d=%d, bs=%d, %s: %.3f ms, %.0f GB/s, "
                "%.2f TFLOP/s\n", label, b.nh, b.nkv, b.d, b.bs, one_kernel ? "one kernel" : "two kernels", ms,
                bytes / ms / 1e6, flops / ms / 1e9);
    if (one_kernel == (b.n <= 8)) engine_ms = ms;
  }
  return engine_ms;
}

TEST(CudaAttentionPerf, DecodeTiming) {
  REQUIRE_GPU();
  if (sanitizing()) GTEST_SKIP() << "no timings under compute-sanitizer";
  Stream stream;
  struct Case {
    int n, ctx;
  };
  for (const Case& c : {Case{64, 4096}, Case{256, 1024}, Case{1, 4096}, Case{8, 2048}, Case{1, 512}}) {
    const std::string label = std::to_string(c.n) + " seqs x " + std::to_string(c.ctx) + " ctx";
    time_decode(stream, std::vector<int>(size_t(c.n), c.ctx), c.ctx, label.c_str());
  }
  // As in bench.py: 256 sequences of 100 to 2048 keys under a graph-sized bound of 4096.
  std::vector<int> mixed(256);
  std::uniform_int_distribution<int> len(100, 2048);
  for (int& c : mixed) c = len(rng());
  time_decode(stream, mixed, 4096, "256 seqs x 100-2048 ctx (bound 4096)");

  // bench.py's decode phase as the engine meets it: 256 requests (prompts of 100-1,024 tokens,
  // 100-1,024 outputs) decode together, and the batch shrinks as they finish, so most steps
  // are far from the one full batch above. Decode step t runs the requests with more than t
  // outputs, each at context prompt + t. Eight snapshots, each standing for 128 steps, times
  // 28 layers: a prediction of the run's decode attention time (the engine's op profile at
  // 53e7166 measured 3.51 s, performance.md).
  std::vector<int> prompt(256), output(256);
  std::uniform_int_distribution<int> draw(100, 1024);
  for (int i = 0; i < 256; ++i) prompt[i] = draw(rng()), output[i] = draw(rng());
  double predicted_s = 0, kv_bytes = 0;
  for (int t = 64; t < 1024; t += 128) {
    std::vector<int> ctx;
    for (int i = 0; i < 256; ++i)
      if (output[i] > t) ctx.push_back(prompt[i] + t);
    if (ctx.empty()) continue;
    const std::string label = "bench.py step " + std::to_string(t) + ": " + std::to_string(ctx.size()) + " seqs";
    const double ms = time_decode(stream, ctx, 4096, label.c_str());
    predicted_s += 28 * 128 * ms / 1e3;
    kv_bytes += 28 * 128 * 4.0 * 8 * 128 * std::accumulate(ctx.begin(), ctx.end(), 0.0);
  }
  std::printf("[ CudaAttention ] timing decode  bench.py trajectory: predicted decode attention %.2f s over 28 "
              "layers, %.2f TB of K/V: %.0f GB/s\n", predicted_s, kv_bytes / 1e12, kv_bytes / predicted_s / 1e9);
}

// What the decode kernel's bytes could cost: the same K/V cache (bench.py's batch at three
// points of its decode phase, and 256 x 1,024) copied (cudaMemcpy, read + write), read as one
// contiguous stream, and read in the kernel's own pattern with no arithmetic (per-warp cp.async
// rings, 8-key tiles of 256-byte rows, `unit` keys per CTA), next to the kernel itself. GB/s
// count K/V bytes (the copy: bytes read plus written).
TEST(CudaAttentionPerf, ReadCeiling) {
  REQUIRE_GPU();
  if (sanitizing()) GTEST_SKIP() << "no timings under compute-sanitizer";
  Stream stream;
  DeviceBuf<unsigned> sink(1);
  NANOVLLM_CUDA_CHECK(cudaMemset(sink.data(), 0, sizeof(unsigned)));
  std::vector<int> prompt(256), output(256);
  std::uniform_int_distribution<int> draw(100, 1024);
  for (int i = 0; i < 256; ++i) prompt[i] = draw(rng()), output[i] = draw(rng());
  struct Case {
    std::string label;
    std::vector<int> ctx;
    int bound;
  };
  std::vector<Case> cases = {{"256 seqs x 1024 ctx", std::vector<int>(256, 1024), 1024}};
  for (int t : {64, 576, 832}) {
    std::vector<int> ctx;
    for (int i = 0; i < 256; ++i)
      if (output[i] > t) ctx.push_back(prompt[i] + t);
    cases.push_back({"bench.py step " + std::to_string(t) + ": " + std::to_string(ctx.size()) + " seqs", ctx, 4096});
  }
  for (const Case& c : cases) {
    DecodeBench b(c.ctx, c.bound);
    const double kv = b.kv_bytes();
    auto line = [&](const std::string& what, double ms, double bytes) {
      std::printf("[ CudaAttention ] read ceiling  %s: %s %.3f ms, %.0f GB/s\n", c.label.c_str(), what.c_str(), ms,
                  bytes / ms / 1e6);
    };
    // The whole cache (all rotated sets) at once: half of it copied onto the other half.
    const size_t whole = size_t(b.cache) * 2;
    const double copy_ms = median_ms(stream, 20, [&] {
      NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(b.vc.data(), b.kc.data(), whole, cudaMemcpyDeviceToDevice, stream));
    });
    line("copy (cudaMemcpy K -> V, whole cache)", copy_ms, 2.0 * double(whole));
    const double stream_ms = median_ms(stream, 20, [&] {
      testing::read_stream(b.kc.data(), int64_t(whole / 16), sink.data(), stream);
      testing::read_stream(b.vc.data(), int64_t(whole / 16), sink.data(), stream);
    });
    line("contiguous read (K and V, whole cache)", stream_ms, 2.0 * double(whole));
    for (int unit : {256, 512}) {
      for (int stages : {2, 4, 6, 8}) {
        for (bool head_major : {false, true}) {
          if (head_major && unit != 256) continue;
          int launches = 0;
          const double ms = median_ms(stream, 50, [&] {
            testing::read_kv_pattern(b.kc.data(), b.vc.data(), b.nkv, b.bs, b.n, b.lens.data(), b.table(launches++),
                                     b.width, b.bound, unit, stages, head_major, sink.data(), stream);
          });
          line(std::string("pattern read, ") + (head_major ? "head-major cache, " : "") + std::to_string(unit) +
                   "-key CTAs, " + std::to_string(stages) + " stages",
               ms, kv);
        }
      }
    }
    line("the decode kernel (two kernels)", b.time_kernel(stream, false), kv);
  }
}

// Whether the work between two attention launches could run under them: the premise of
// running a decode batch as two halves whose layers interleave (one half's attention while the
// other half's products run). Half of bench.py's step-64 batch: its decode attention (the
// engine's two kernels) for 28 layers on one stream, and 28 layers of Qwen3-0.6B's four
// products at M = that half (cuBLASLt, per-M plans as in decode; each layer its own 31 MB of
// weights) on another, captured as one graph with the two chains side by side (equal stream
// priorities, then the products' stream at the highest priority), against each chain alone
// and both in one stream. "hidden" = the part of the products' time the overlap saves.
TEST(CudaAttentionPerf, OverlapWithProducts) {
  REQUIRE_GPU();
  if (sanitizing()) GTEST_SKIP() << "no timings under compute-sanitizer";
  std::vector<int> prompt(256), output(256);
  std::uniform_int_distribution<int> draw(100, 1024);
  for (int i = 0; i < 256; ++i) prompt[i] = draw(rng()), output[i] = draw(rng());
  std::vector<int> half;
  for (int i = 0; i < 256; i += 2)
    if (output[i] > 64) half.push_back(prompt[i] + 64);
  DecodeBench b(half, 4096);
  const int64_t M = b.n;
  constexpr int kLayers = 28;
  struct Mat {
    int64_t N, K;
  };
  const Mat mats[4] = {{4096, 1024}, {1024, 2048}, {6144, 1024}, {1024, 3072}};  // qkv, o, gate_up, down
  std::vector<std::unique_ptr<DeviceBuf<uint16_t>>> w;
  for (int l = 0; l < kLayers; ++l)
    for (const Mat& m : mats) {
      w.push_back(std::make_unique<DeviceBuf<uint16_t>>(size_t(m.N * m.K)));
      NANOVLLM_CUDA_CHECK(cudaMemset(w.back()->data(), 0, size_t(m.N * m.K) * 2));
    }
  DeviceBuf<uint16_t> x(size_t(M) * 3072), y(size_t(M) * 6144);
  NANOVLLM_CUDA_CHECK(cudaMemset(x.data(), 0, x.bytes()));
  void* gemm_ws = nullptr;  // cuBLASLt's workspace: 256-byte aligned (a DeviceBuf's data sits past its guard)
  const size_t gemm_ws_bytes = size_t(32) << 20;
  NANOVLLM_CUDA_CHECK(cudaMalloc(&gemm_ws, gemm_ws_bytes));
  std::unique_ptr<void, decltype(&cudaFree)> gemm_ws_owner(gemm_ws, &cudaFree);
  CublasLtGemm gemm(gemm_ws, gemm_ws_bytes);
  gemm.set_per_shape(true);
  const size_t ws_bytes = gpu::paged_attention_decode_workspace_bytes(b.n, b.nh, b.nkv, b.d, b.bound);
  DeviceBuf<float> attn_ws(ws_bytes / sizeof(float));
  const float scale = 1.f / std::sqrt(float(b.d));

  int least = 0, greatest = 0;
  NANOVLLM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t main_s, side_equal, side_high;
  NANOVLLM_CUDA_CHECK(cudaStreamCreateWithPriority(&main_s, cudaStreamNonBlocking, least));
  NANOVLLM_CUDA_CHECK(cudaStreamCreateWithPriority(&side_equal, cudaStreamNonBlocking, least));
  NANOVLLM_CUDA_CHECK(cudaStreamCreateWithPriority(&side_high, cudaStreamNonBlocking, greatest));

  auto attention = [&](cudaStream_t s, int l) {
    gpu::paged_attention_decode(b.qkv.data(), b.nh, b.nkv, b.d, scale, b.kc.data(), b.vc.data(), b.bs, b.num_blocks,
                                b.n, b.lens.data(), b.table(l), b.width, b.bound, b.out.data(), attn_ws.data(),
                                attn_ws.bytes(), s, nullptr);
  };
  auto products = [&](cudaStream_t s, int l) {
    for (int i = 0; i < 4; ++i)
      gemm.linear(x.data(), w[size_t(l) * 4 + i]->data(), nullptr, y.data(), M, mats[i].N, mats[i].K, s);
  };
  for (int i = 0; i < 4; ++i) products(main_s, 0);  // plans made (timed) outside any capture
  NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(main_s));

  cudaEvent_t fork, join;
  NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  // ms of one replay of the graph captured from `body` on main_s (best of 5).
  auto graph_ms = [&](const std::function<void()>& body) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    NANOVLLM_CUDA_CHECK(cudaStreamBeginCapture(main_s, cudaStreamCaptureModeThreadLocal));
    body();
    NANOVLLM_CUDA_CHECK(cudaStreamEndCapture(main_s, &g));
    NANOVLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    const double ms = median_ms(main_s, 5, [&] { NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec, main_s)); });
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    return ms;
  };
  auto side_by_side = [&](cudaStream_t side) {
    return [&, side] {
      NANOVLLM_CUDA_CHECK(cudaEventRecord(fork, main_s));
      NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(side, fork));
      for (int l = 0; l < kLayers; ++l) {
        attention(main_s, l);
        products(side, l);
      }
      NANOVLLM_CUDA_CHECK(cudaEventRecord(join, side));
      NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(main_s, join));
    };
  };
  const double a = graph_ms([&] {
    for (int l = 0; l < kLayers; ++l) attention(main_s, l);
  });
  const double pr = graph_ms([&] {
    for (int l = 0; l < kLayers; ++l) products(main_s, l);
  });
  const double serial = graph_ms([&] {
    for (int l = 0; l < kLayers; ++l) {
      attention(main_s, l);
      products(main_s, l);
    }
  });
  const double eq = graph_ms(side_by_side(side_equal));
  const double hi = graph_ms(side_by_side(side_high));
  EXPECT_EQ(count_nonfinite(b.out), 0u);
  std::printf("[ CudaAttention ] overlap  %d seqs, 28 layers: attention alone %.3f ms (%.0f GB/s), products alone "
              "%.3f ms, one stream %.3f ms; side by side %.3f ms (hidden %.0f%%), products' stream high priority "
              "%.3f ms (hidden %.0f%%)\n",
              b.n, a, kLayers * b.kv_bytes() / a / 1e6, pr, serial, eq, 100 * (serial - eq) / pr, hi,
              100 * (serial - hi) / pr);
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
  cudaStreamDestroy(main_s);
  cudaStreamDestroy(side_equal);
  cudaStreamDestroy(side_high);
}

// Prefill timing of n_seqs prompts of T tokens each (causal, whole prompts), blocks of bs
// scattered over the pool. FLOPs count the visible (query, key) pairs: 4 d nh sum_rows keys.
void time_prefill(int n_seqs, int T, int nh, int nkv, int d, int bs, const char* variant = "auto") {
  Stream stream;
  const int64_t tokens = int64_t(n_seqs) * T;
  const int blocks_per_seq = (T + bs - 1) / bs;
  const int64_t blocks = int64_t(n_seqs) * blocks_per_seq;
  const int64_t cache = blocks * bs * nkv * d;
  DeviceBuf<uint16_t> qkv(size_t(tokens) * (nh + 2 * nkv) * d), kc{size_t(cache)}, vc{size_t(cache)},
      out(size_t(tokens) * nh * d);
  fill_random(qkv.data(), size_t(tokens) * (nh + 2 * nkv) * d);
  fill_random(kc.data(), size_t(cache));
  fill_random(vc.data(), size_t(cache));
  std::vector<int32_t> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng());
  std::vector<int32_t> cu_h(n_seqs + 1);
  for (int s = 0; s <= n_seqs; ++s) cu_h[s] = s * T;
  DeviceBuf<int32_t> tables(ids.size()), lens(n_seqs), cu(n_seqs + 1);
  tables.upload(ids);
  lens.upload(std::vector<int32_t>(n_seqs, T));
  cu.upload(cu_h);
  const float scale = 1.f / std::sqrt(float(d));
  const double ms = median_ms(stream, 30, [&] {
    gpu::paged_attention_prefill(qkv.data(), tokens, nh, nkv, d, scale, kc.data(), vc.data(), bs, blocks,
                                 n_seqs, cu.data(), lens.data(), tables.data(), blocks_per_seq, out.data(),
                                 stream);
  });
  EXPECT_EQ(count_nonfinite(out), 0u);
  const double flops = 4.0 * nh * d * n_seqs * (double(T) * (T + 1) / 2);  // causal: visible pairs
  const double bytes = double(tokens) * (nh + 2 * nkv) * d * 2 + double(tokens) * nh * d * 2;
  std::printf("[ CudaAttention ] timing prefill %d x %d tokens causal, %d/%d heads, d=%d, bs=%d, %s: %.3f ms, "
              "%.1f TFLOP/s, %.0f GB/s\n", n_seqs, T, nh, nkv, d, bs, variant, ms, flops / ms / 1e9,
              bytes / ms / 1e6);
}

// Prefill: one 4096-token prompt and one of 1024, 16 query / 8 KV heads, and Qwen3-8B's shape
// (8 prompts x 4096 tokens, 32 query / 8 KV heads); d = 128, blocks of 256.
TEST(CudaAttentionPerf, PrefillTiming) {
  REQUIRE_GPU();
  if (sanitizing()) GTEST_SKIP() << "no timings under compute-sanitizer";
  time_prefill(1, 4096, 16, 8, 128, 256);
  time_prefill(1, 1024, 16, 8, 128, 256);
  time_prefill(8, 4096, 32, 8, 128, 256);
  // Each d = 128 variant forced (the lines above show the host's pick).
  std::vector<const char*> variants = {"wide", "dual"};
  if (gpu::paged_attention_prefill_uses_wgmma()) variants.push_back("wgmma");
  for (const char* variant : variants) {
    const ForcePrefillVariant force(variant);
    time_prefill(1, 4096, 16, 8, 128, 256, variant);
    time_prefill(1, 1024, 16, 8, 128, 256, variant);
    time_prefill(8, 4096, 32, 8, 128, 256, variant);
  }
}

}  // namespace
}  // namespace nanovllm
