// The paged attention kernels (kernels/cuda/ops.h: paged_attention_decode, paged_attention_prefill)
// against the CPU reference cpu::paged_attention, run on the same bf16-rounded inputs as float.
//
// - Fresh random inputs on every run (the seed is printed), never zeros: q, k, v, and caches
//   whose unused blocks hold random data too, so reading a wrong block shows. Block tables are
//   random permutations of the pool (scattered ids), -1 past each sequence's end.
// - Shapes: head_dim 64/128/256, GQA groups 1/2/4/8 (and 3, 12 for decode), block sizes 1 to
//   256, contexts from 0 and 1 to several thousand, odd lengths, sequences ending on, before and
//   after block boundaries; prefill batches mix q_len 1 (decode rows) with long prefills over
//   cached prefixes. Decode runs with the exact max_context_len and with a graph-sized bound.
// - Outputs (and the decode workspace) are poisoned with 0xFF bytes (bf16 NaN) and fenced by
//   guard bytes that must stay untouched. Bound: ||out - ref|| / ||ref|| < 1e-2 over the output
//   and for every (token, head) row, every element within 2^-7 |ref| + 1e-2 rms(row), no NaN.
// - A CUDA graph captures each kernel once and replays it on new metadata.
// - Decode is batch invariant: a sequence's output bits are the same alone, in a batch of 7 and
//   in a batch of 300, whatever the bound passed as max_context_len.
// - Informational timings at realistic sizes (printed, not asserted).
// The largest errors are printed per kernel ("max rel err"); scripts/gpu-check collects them.
// Under compute-sanitizer (NANOVLLM_GPU_SANITIZER set) the cases are fewer and smaller and the
//
// This file: decode, CUDA graph replays and the host-side argument checks;
// test_cuda_attention_prefill.cpp: prefill; test_cuda_attention_perf.cpp: the timings;
// attention_test_util.h: the shared pieces.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "late_store_kv.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

using namespace attention_test;

TEST(CudaAttentionDecode, ShapesGroupsBlockSizes) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"paged_attention_decode"};
  const int block_sizes[] = {1, 16, 32, 64, 128, 256};
  const int nkvs[] = {1, 2, 4};
  const int longs[] = {4099, 2500, 5003};
  int k = 0;
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8}) {
      const int bs = block_sizes[k % 6], nkv = nkvs[k % 3];
      const int n_long = sanitizing() ? 0 : longs[k % 3];
      ++k;
      const Batch b = make_batch(nkv * group, nkv, d, bs, decode_seqs(bs, n_long), k % 2 ? 1.f : 3.f);
      // The exact bound, and (off the sanitizer) a graph-sized one: a different split count.
      report.add(check_decode(stream, b));
      if (!sanitizing()) report.add(check_decode(stream, b, 32768));
    }
}

// Group sizes that are not a power of two or exceed one CTA's 8 heads, a zero-length context,
// one sequence (many splits) and many short sequences (one to four splits each).
TEST(CudaAttentionDecode, OddGroupsEmptyContextsAndBatchSizes) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"paged_attention_decode+"};
  const bool small = sanitizing();
  for (int group : {3, 12, 16}) {
    const Batch b = make_batch(2 * group, 2, 128, 16, decode_seqs(16, small ? 0 : 1500));
    report.add(check_decode(stream, b));
  }
  {
    const Batch b = make_batch(8, 2, 64, 32, {{1, 0}, {1, 5}, {1, 0}, {1, 300}});
    report.add(check_decode(stream, b));
  }
  {
    const Batch b = make_batch(16, 2, 128, 64, {{1, small ? 700 : 6007}});
    report.add(check_decode(stream, b));
  }
  {
    std::vector<Seq> many;
    std::uniform_int_distribution<int> ctx(1, small ? 40 : 400);
    for (int i = 0; i < (small ? 40 : 300); ++i) many.push_back({1, ctx(rng())});
    const Batch b = make_batch(32, 8, 128, 16, many);
    report.add(check_decode(stream, b));
  }
}

// Writes one sequence's q row and its n keys' K and V rows (n x nkv x d each) into sequence s of
// the batch, through its block table, so the same sequence can sit in different batches.
void implant(Batch& b, int s, const Bf16Host& q, const Bf16Host& k, const Bf16Host& v) {
  const int64_t qn = int64_t(b.nh) * b.d, kv_row = int64_t(b.nkv) * b.d;
  for (int64_t i = 0; i < qn; ++i) {
    b.qkv.bits[size_t(b.cu[s] * b.row() + i)] = q.bits[size_t(i)];
    b.qkv.f[size_t(b.cu[s] * b.row() + i)] = q.f[size_t(i)];
  }
  for (int t = 0; t < b.ctx[s]; ++t) {
    const int64_t blk = b.tables[size_t(s) * b.max_blocks + t / b.bs];
    const int64_t dst = (blk * b.bs + t % b.bs) * kv_row;
    for (int64_t i = 0; i < kv_row; ++i) {
      b.kc.bits[size_t(dst + i)] = k.bits[size_t(t * kv_row + i)];
      b.kc.f[size_t(dst + i)] = k.f[size_t(t * kv_row + i)];
      b.vc.bits[size_t(dst + i)] = v.bits[size_t(t * kv_row + i)];
      b.vc.f[size_t(dst + i)] = v.f[size_t(t * kv_row + i)];
    }
  }
}

// The same sequence decoded alone, in a batch of 7 and in a batch of 300 (other random
// sequences around it, other bounds, other block ids) gives the same output bits: the work
// split depends on the sequence's own context only.
TEST(CudaAttentionDecode, BatchInvariant) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"decode batch invariance"};
  struct Shape {
    int nh, nkv, d, bs;
  };
  const bool small = sanitizing();
  std::vector<int> contexts = {1, 127, 128, 129, 1000, 4096};
  if (small) contexts = {1, 128, 129, 1000};
  for (const Shape& sh : {Shape{16, 8, 128, 32}, Shape{12, 2, 64, 16}}) {
    for (int n : contexts) {
      SCOPED_TRACE("context " + std::to_string(n) + " nh=" + std::to_string(sh.nh));
      const int64_t kv_elems = int64_t(n) * sh.nkv * sh.d;
      const Bf16Host q = random_bf16(size_t(sh.nh) * sh.d, 1.f);
      const Bf16Host k = random_bf16(size_t(kv_elems), 1.f), v = random_bf16(size_t(kv_elems), 1.f);
      // (batch size, where the sequence sits, longest other context, bound passed or 0)
      struct Setup {
        int size, at, other_max, bound;
      };
      const Setup setups[] = {{1, 0, 1, 0}, {7, 3, small ? 300 : 3000, 0}, {small ? 60 : 300, 123 % (small ? 60 : 300), 64, 8192}};
      std::vector<uint16_t> first;
      for (const Setup& su : setups) {
        std::vector<Seq> seqs;
        std::uniform_int_distribution<int> other(0, su.other_max);
        for (int i = 0; i < su.size; ++i) seqs.push_back({1, i == su.at ? n : other(rng())});
        Batch b = make_batch(sh.nh, sh.nkv, sh.d, sh.bs, seqs);
        implant(b, su.at, q, k, v);
        std::vector<uint16_t> out;
        report.add(check_decode(stream, b, su.bound, &out));
        const int64_t row = int64_t(sh.nh) * sh.d;
        const std::vector<uint16_t> mine(out.begin() + su.at * row, out.begin() + (su.at + 1) * row);
        if (first.empty()) {
          first = mine;
        } else {
          size_t diff = 0;
          for (size_t i = 0; i < mine.size(); ++i) diff += mine[i] != first[i];
          EXPECT_EQ(diff, 0u) << "batch of " << su.size << ": output bits differ from the lone decode";
        }
      }
    }
  }
}

// With counters and few sequences the decode kernel reads each sequence's older cached rows
// before it waits for the kernel launched just before it (ops.h). Here that kernel writes every
// sequence's newest row, which the device cache holds as NaN until then: a read of the newest
// row before the wait shows as NaN. The writer is store_kv (a race the early read may or may
// not lose) and, every other round, late_store_kv, which holds its writes back 50 us so that
// an early read certainly meets the NaN.
TEST(CudaAttentionDecode, NewestRowStoredByThePreviousKernel) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"decode after store_kv"};
  const int rounds = sanitizing() ? 2 : 20;
  struct Shape {
    int nh, nkv, bs, bound;
  };
  for (const Shape& sh : {Shape{16, 8, 256, 4096}, Shape{16, 8, 12, 0}, Shape{32, 8, 256, 0}, Shape{8, 2, 32, 4096}}) {
    std::vector<int> ctx = {1, 7, sh.bs, sh.bs + 1, 300, 777, 1500, 2049};
    if (sanitizing()) ctx = {1, sh.bs + 1, 300};
    std::vector<Seq> seqs;
    for (int c : ctx) seqs.push_back({1, c});
    std::shuffle(seqs.begin(), seqs.end(), rng());
    Batch b = make_batch(sh.nh, sh.nkv, 128, sh.bs, seqs);
    SCOPED_TRACE(b.what() + " bound=" + std::to_string(sh.bound));
    // Row s of qkv carries, as its k and v, sequence s's newest cached row: what store_kv writes.
    const int S = b.num_seqs(), d = b.d;
    const int64_t kv = int64_t(b.nkv) * d;
    std::vector<int32_t> slots(S);
    for (int s = 0; s < S; ++s) {
      const int n = b.ctx[s];
      slots[s] = b.tables[size_t(s) * b.max_blocks + (n - 1) / b.bs] * b.bs + (n - 1) % b.bs;
      for (int64_t i = 0; i < kv; ++i) {
        const size_t kq = size_t(s * b.row() + b.nh * d + i), vq = size_t(kq + kv), c = size_t(slots[s] * kv + i);
        b.qkv.bits[kq] = b.kc.bits[c], b.qkv.f[kq] = b.kc.f[c];
        b.qkv.bits[vq] = b.vc.bits[c], b.qkv.f[vq] = b.vc.f[c];
      }
    }
    const std::vector<float> ref = reference(b);
    DeviceBatch dev(b);
    DeviceBuf<int32_t> dslots(slots.size());
    dslots.upload(slots);
    const int max_ctx = sh.bound > 0 ? sh.bound : b.max_ctx;
    DeviceBuf<float> ws(gpu::paged_attention_decode_workspace_bytes(S, b.nh, b.nkv, d, max_ctx) / sizeof(float));
    DeviceBuf<int32_t> counters(gpu::paged_attention_decode_counters(S, b.nh, b.nkv));
    NANOVLLM_CUDA_CHECK(cudaMemset(counters.data(), 0, counters.bytes()));
    for (int round = 0; round < rounds; ++round) {
      for (int s = 0; s < S; ++s) {  // the newest rows as NaN
        NANOVLLM_CUDA_CHECK(cudaMemset(dev.kc.data() + slots[s] * kv, 0xFF, size_t(kv) * 2));
        NANOVLLM_CUDA_CHECK(cudaMemset(dev.vc.data() + slots[s] * kv, 0xFF, size_t(kv) * 2));
      }
      dev.out.poison();
      NANOVLLM_CUDA_CHECK(cudaDeviceSynchronize());
      if (round % 2)
        testing::late_store_kv(dev.qkv.data(), S, b.nh, b.nkv, d, dev.kc.data(), dev.vc.data(), b.num_blocks * b.bs,
                               dslots.data(), 50, stream);
      else
        gpu::store_kv(dev.qkv.data(), S, b.nh, b.nkv, d, dev.kc.data(), dev.vc.data(), b.num_blocks * b.bs,
                      dslots.data(), stream);
      run_decode(dev, b, max_ctx, ws, stream, counters.data());
      stream.sync();
      const Stats st = compare(dev.out.download(), ref, b.T * b.nh, d);
      EXPECT_CLOSE(st, "round " + std::to_string(round));
      report.add(st);
      if (st.nonfinite || st.bad) break;
    }
    const std::vector<int32_t> left = counters.download();
    EXPECT_EQ(std::count(left.begin(), left.end(), 0), std::ptrdiff_t(left.size())) << "counters not left zero";
  }
}


// A CUDA graph captures each kernel once (its grid fixed by the sizes and, for decode, the
// bound) and replays it on new inputs and metadata: other contexts and block tables, and for
// prefill other query runs with the same T. Shows the launches neither allocate nor synchronise.
void replay_and_check(cudaGraphExec_t exec, Stream& stream, DeviceBatch& d, const Batch& b,
                      Report& report) {
  SCOPED_TRACE("replay " + b.what());
  d.qkv.upload(b.qkv.bits);
  d.kc.upload(b.kc.bits);
  d.vc.upload(b.vc.bits);
  d.cu.upload(b.cu);
  d.ctx.upload(b.ctx);
  d.tables.upload(b.tables);
  d.out.poison();
  NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  stream.sync();
  const std::vector<uint16_t> out = d.out.download();
  EXPECT_EQ(d.out.bad_guards(), 0u);
  const Stats s = compare(out, reference(b), b.T * b.nh, b.d);
  EXPECT_CLOSE(s, b.what());
  report.add(s);
}

template <typename F>
cudaGraphExec_t capture(Stream& stream, F&& launch) {
  launch();  // warm-up outside the capture (one-time attribute setting)
  stream.sync();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NANOVLLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  launch();
  NANOVLLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  NANOVLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  NANOVLLM_CUDA_CHECK(cudaGraphDestroy(graph));
  return exec;
}

TEST(CudaAttentionGraph, CaptureOnceReplayOnNewMetadata) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"attention graph replays"};
  const int bound = sanitizing() ? 256 : 2048, bs = 16;
  const int64_t pool = 6 * (bound / bs + 1) + 8;
  const int width = bound / bs + 3;
  auto decode_batch = [&](std::vector<int> ctx) {
    std::vector<Seq> seqs;
    for (int c : ctx) seqs.push_back({1, c});
    return make_batch(16, 4, 128, bs, seqs, 1.f, pool, width);
  };
  const Batch a = decode_batch({1, 100, bound, 33, 17, 250});
  const Batch b = decode_batch({bound - 1, 2, 64, 0, 200, 129});
  {
    DeviceBatch d(a);
    DeviceBuf<float> ws(gpu::paged_attention_decode_workspace_bytes(6, 16, 4, 128, bound) / sizeof(float));
    const cudaGraphExec_t exec = capture(stream, [&] { run_decode(d, a, bound, ws, stream); });
    replay_and_check(exec, stream, d, b, report);
    replay_and_check(exec, stream, d, a, report);
    NANOVLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
  }
  {  // with counters, combined inside the split kernel: each replay must leave them zero
    DeviceBatch d(a);
    DeviceBuf<float> ws(gpu::paged_attention_decode_workspace_bytes(6, 16, 4, 128, bound) / sizeof(float));
    DeviceBuf<int32_t> counters(gpu::paged_attention_decode_counters(6, 16, 4));
    NANOVLLM_CUDA_CHECK(cudaMemset(counters.data(), 0, counters.bytes()));
    const cudaGraphExec_t exec = capture(stream, [&] { run_decode(d, a, bound, ws, stream, counters.data()); });
    replay_and_check(exec, stream, d, b, report);
    replay_and_check(exec, stream, d, a, report);
    replay_and_check(exec, stream, d, b, report);
    NANOVLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
    const std::vector<int32_t> left = counters.download();
    EXPECT_EQ(std::count(left.begin(), left.end(), 0), std::ptrdiff_t(left.size())) << "counters not left zero";
  }
  const int T = sanitizing() ? 120 : 700;
  const Batch p1 = make_batch(8, 2, 64, bs, {{T - 21, T - 21}, {20, 300}, {1, 77}}, 1.f, 200, 80);
  const Batch p2 = make_batch(8, 2, 64, bs, {{1, 5}, {T - 2, T + 40}, {1, 1}}, 1.f, 200, 80);
  {
    DeviceBatch d(p1);
    const cudaGraphExec_t exec = capture(stream, [&] { run_prefill(d, p1, stream); });
    replay_and_check(exec, stream, d, p2, report);
    replay_and_check(exec, stream, d, p1, report);
    NANOVLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
  }
}

// ---- Argument checks: on the host, before any CUDA call, so they run without a GPU ----

TEST(CudaAttentionArgs, RejectedBeforeAnyLaunch) {
  void* p = reinterpret_cast<void*>(uintptr_t{256});  // never dereferenced: the checks throw first
  void* odd = reinterpret_cast<void*>(uintptr_t{258});
  const int32_t* ip = static_cast<const int32_t*>(p);
  auto decode = [&](int nh, int nkv, int d, int bs, int n, int max_ctx, const void* q, void* ws, size_t ws_bytes) {
    gpu::paged_attention_decode(q, nh, nkv, d, 0.1f, p, p, bs, 64, n, ip, ip, 8, max_ctx, p, ws, ws_bytes, nullptr);
  };
  EXPECT_THROW(decode(16, 8, 96, 16, 4, 100, p, nullptr, 0), Error);   // head_dim
  EXPECT_THROW(decode(12, 8, 128, 16, 4, 100, p, nullptr, 0), Error);  // nh % nkv
  EXPECT_THROW(decode(16, 8, 128, 0, 4, 100, p, nullptr, 0), Error);   // block size
  EXPECT_THROW(decode(16, 8, 128, 16, 4, 100, nullptr, nullptr, 0), Error);
  EXPECT_THROW(decode(16, 8, 128, 16, 4, 100, odd, nullptr, 0), Error);  // alignment
  // One sequence of 4096 keys splits; the workspace must be there and large enough.
  const size_t need = gpu::paged_attention_decode_workspace_bytes(1, 16, 8, 128, 4096);
  EXPECT_GT(need, 0u);
  EXPECT_THROW(decode(16, 8, 128, 16, 1, 4096, p, nullptr, 0), Error);
  EXPECT_THROW(decode(16, 8, 128, 16, 1, 4096, p, p, need - 4), Error);
  try {
    decode(16, 8, 128, 16, 1, 4096, p, p, 8);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("paged_attention_decode"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
  }
  // Workspace sizes: none for short contexts; the maximum covers every smaller batch.
  EXPECT_EQ(gpu::paged_attention_decode_workspace_bytes(64, 16, 8, 128, 256), 0u);
  const size_t big = gpu::paged_attention_decode_workspace_bytes(256, 32, 8, 128, 32768);
  for (int n : {1, 7, 64, 255})
    EXPECT_LE(gpu::paged_attention_decode_workspace_bytes(n, 32, 8, 128, 32768), big) << n;
  // At most 16 splits per query head when a sequence spans >= 8 CTAs of heads (here 8 KV heads).
  EXPECT_LE(big, size_t(256) * 32 * 16 * (128 + 2) * sizeof(float)) << "the workspace stays bounded";
  EXPECT_EQ(gpu::paged_attention_decode_workspace_bytes(8, 16, 8, 128, 1000),
            gpu::paged_attention_decode_workspace_bytes(8, 16, 8, 128, 1024))
      << "the split count grows in steps of 256 keys";
  EXPECT_THROW(gpu::paged_attention_decode_workspace_bytes(4, 16, 8, 80, 100), Error);
  // Nothing to do: no sequences, no tokens.
  EXPECT_NO_THROW(gpu::paged_attention_decode(nullptr, 16, 8, 128, 0.1f, nullptr, nullptr, 16, 0, 0,
                                              nullptr, nullptr, 1, 0, nullptr, nullptr, 0, nullptr));
  EXPECT_NO_THROW(gpu::paged_attention_prefill(nullptr, 0, 16, 8, 128, 0.1f, nullptr, nullptr, 16, 0, 0,
                                               nullptr, nullptr, nullptr, 1, nullptr, nullptr));

  auto prefill = [&](int64_t T, int nh, int nkv, int d, int bs, int n, const void* q, const int32_t* cu) {
    gpu::paged_attention_prefill(q, T, nh, nkv, d, 0.1f, p, p, bs, 64, n, cu, ip, ip, 8, p, nullptr);
  };
  EXPECT_THROW(prefill(10, 16, 8, 80, 16, 2, p, ip), Error);     // head_dim
  EXPECT_THROW(prefill(10, 16, 3, 128, 16, 2, p, ip), Error);    // nh % nkv
  EXPECT_THROW(prefill(10, 16, 8, 128, 16, 0, p, ip), Error);    // no sequences
  EXPECT_THROW(prefill(10, 16, 8, 128, 16, 2, p, nullptr), Error);
  EXPECT_THROW(prefill(10, 16, 8, 128, 16, 2, odd, ip), Error);  // alignment
  EXPECT_THROW(prefill(-1, 16, 8, 128, 16, 2, p, ip), Error);
  EXPECT_THROW(gpu::paged_attention_prefill(p, 10, 16, 8, 128, NAN, p, p, 16, 64, 2, ip, ip, ip, 8, p, nullptr), Error);
}

}  // namespace
}  // namespace nanovllm
