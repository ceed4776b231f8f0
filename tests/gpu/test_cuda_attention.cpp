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
// timings are skipped. Without a GPU the tests are SKIPPED, except the argument checks.
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

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "late_store_kv.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

#define REQUIRE_GPU()                                               \
  do {                                                              \
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

bool sanitizing() { return std::getenv("NANOVLLM_GPU_SANITIZER") != nullptr; }

std::mt19937_64& rng() {
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
Bf16Host random_bf16(size_t n, float stddev) {
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

// n elements of T on the device between guards of 64 poisoned bytes.
template <typename T>
class DeviceBuf {
 public:
  explicit DeviceBuf(size_t n) : n_(n), bytes_(2 * kGuard + n * sizeof(T)) {
    NANOVLLM_CUDA_CHECK(cudaMalloc(&base_, bytes_));
    poison();
  }
  ~DeviceBuf() { cudaFree(base_); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;

  T* data() { return reinterpret_cast<T*>(static_cast<char*>(base_) + kGuard); }
  size_t bytes() const { return n_ * sizeof(T); }
  void poison() { NANOVLLM_CUDA_CHECK(cudaMemset(base_, 0xFF, bytes_)); }
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n_);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(data(), h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() {
    std::vector<unsigned char> all(bytes_);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(all.data(), base_, bytes_, cudaMemcpyDeviceToHost));
    bad_guards_ = 0;
    for (size_t i = 0; i < kGuard; ++i) bad_guards_ += (all[i] != 0xFF) + (all[bytes_ - 1 - i] != 0xFF);
    std::vector<T> out(n_);
    if (n_) std::memcpy(out.data(), all.data() + kGuard, n_ * sizeof(T));
    return out;
  }
  size_t bad_guards() const { return bad_guards_; }  // as of the last download()

 private:
  static constexpr size_t kGuard = 64;
  size_t n_, bytes_, bad_guards_ = 0;
  void* base_ = nullptr;
};

class Stream {
 public:
  Stream() { NANOVLLM_CUDA_CHECK(cudaStreamCreate(&s_)); }
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }
  void sync() { NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_{};
};

struct Stats {
  double rel = 0, worst_row = 0;
  int64_t nonfinite = 0, bad = 0;
};

// rows x cols, one row per (token, head). Element bound 2^-7 |ref| + 1e-2 rms(row): the output's
// bf16 rounding, plus (prefill) P rounded to bf16 before the PV product.
Stats compare(const std::vector<uint16_t>& out, const std::vector<float>& ref, int64_t rows,
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
Batch make_batch(int nh, int nkv, int d, int bs, std::vector<Seq> seqs, float q_std = 1.f,
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

std::vector<float> reference(const Batch& b) {
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

void run_decode(DeviceBatch& d, const Batch& b, int max_context_len, DeviceBuf<float>& ws,
                cudaStream_t stream, int* counters = nullptr) {
  gpu::paged_attention_decode(d.qkv.data(), b.nh, b.nkv, b.d, b.scale, d.kc.data(), d.vc.data(),
                              b.bs, b.num_blocks, b.num_seqs(), d.ctx.data(), d.tables.data(),
                              b.max_blocks, max_context_len, d.out.data(), ws.data(), ws.bytes(),
                              stream, counters);
}

void run_prefill(DeviceBatch& d, const Batch& b, cudaStream_t stream) {
  gpu::paged_attention_prefill(d.qkv.data(), b.T, b.nh, b.nkv, b.d, b.scale, d.kc.data(),
                               d.vc.data(), b.bs, b.num_blocks, b.num_seqs(), d.cu.data(),
                               d.ctx.data(), d.tables.data(), b.max_blocks, d.out.data(), stream);
}

// Checks one decode batch; `bound` is the max_context_len passed (0: the batch's own maximum).
// The output bits go to *out_bits when given.
Stats check_decode(Stream& stream, const Batch& b, int bound = 0, std::vector<uint16_t>* out_bits = nullptr) {
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

Stats check_prefill(Stream& stream, const Batch& b) {
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
std::vector<Seq> decode_seqs(int bs, int n_long) {
  std::vector<int> ctx = {1, 2, std::max(3, bs - 1), bs + 1, 2 * bs, 129, 777};
  if (bs == 1) ctx = {1, 2, 3, 17, 129, 777};
  if (sanitizing()) ctx = {1, std::max(2, bs - 1), bs + 1, 150};
  else if (n_long > 0) ctx.push_back(n_long);
  std::vector<Seq> seqs;
  for (int c : ctx) seqs.push_back({1, c});
  std::shuffle(seqs.begin(), seqs.end(), rng());
  return seqs;
}

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

// Prefill batches: decode rows, whole prompts, chunks over cached prefixes, odd lengths.
std::vector<Seq> prefill_seqs(int bs, int k) {
  if (sanitizing()) return {{1, 90}, {37, 37}, {70, 70 + bs + 3}, {1, 1}};
  std::vector<Seq> seqs = {{1, 300}, {37, 37}, {200, 1100}, {1, 1}, {64, 64 + bs}, {129, 129},
                           {5, 5 + 2 * bs - 1}};
  if (k % 3 == 0) seqs.push_back({1000, 3100});  // a long chunk over a long prefix
  if (k % 3 == 1) seqs.push_back({700, 700});    // a long prompt, no prefix
  if (k % 3 == 2) seqs.push_back({0, 0});        // an empty query run
  std::shuffle(seqs.begin(), seqs.end(), rng());
  return seqs;
}

TEST(CudaAttentionPrefill, ShapesGroupsBlockSizes) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"paged_attention_prefill"};
  const int block_sizes[] = {16, 32, 64, 128, 256};
  const int nkvs[] = {2, 1, 4};
  int k = 0;
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8}) {
      const int bs = block_sizes[k % 5], nkv = nkvs[k % 3];
      const Batch b = make_batch(nkv * group, nkv, d, bs, prefill_seqs(bs, k), k % 2 ? 1.f : 3.f);
      ++k;
      report.add(check_prefill(stream, b));
    }
}

// Block size 1, group sizes 3 and 6, a pure-decode batch, one long prompt of several thousand
// tokens, and a chunk at the end of a long prefix.
TEST(CudaAttentionPrefill, OddShapesAndLongSequences) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"paged_attention_prefill+"};
  const bool small = sanitizing();
  report.add(check_prefill(stream, make_batch(4, 2, 128, 1, {{1, 40}, {33, 33}, {20, small ? 90 : 600}})));
  report.add(check_prefill(stream, make_batch(6, 2, 64, 16, {{17, 17}, {1, 99}, {50, 250}})));
  report.add(check_prefill(stream, make_batch(12, 2, 128, 32, {{3, 300}, {small ? 40 : 400, small ? 40 : 401}})));
  std::vector<Seq> decode_only;
  for (int c : {1, 15, 16, 17, 1000}) decode_only.push_back({1, small ? std::min(c, 100) : c});
  report.add(check_prefill(stream, make_batch(16, 8, 128, 16, decode_only)));
  if (!small) {
    report.add(check_prefill(stream, make_batch(16, 8, 128, 256, {{3000, 3000}})));
    report.add(check_prefill(stream, make_batch(8, 1, 64, 64, {{513, 5000}, {1, 4321}})));
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
void time_decode(Stream& stream, const std::vector<int>& ctx, int bound, const char* label) {
  const int n = int(ctx.size()), nh = 16, nkv = 8, d = 128, bs = 256;
  int64_t set_blocks = 0;
  int width = 1;
  for (int c : ctx) {
    set_blocks += (c + bs - 1) / bs;
    width = std::max(width, (c + bs - 1) / bs);
  }
  const int64_t set_bytes = 2 * set_blocks * bs * nkv * d * 2;
  const int sets = int(std::min<int64_t>(16, std::max<int64_t>(1, ((int64_t(256) << 20) + set_bytes - 1) / set_bytes)));
  const int64_t num_blocks = set_blocks * sets;
  const int64_t cache = num_blocks * bs * nkv * d;
  DeviceBuf<uint16_t> qkv(size_t(n) * (nh + 2 * nkv) * d), kc{size_t(cache)}, vc{size_t(cache)},
      out(size_t(n) * nh * d);
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
  DeviceBuf<int32_t> tables(tables_h.size()), lens(n);
  tables.upload(tables_h);
  lens.upload(ctx);
  const size_t ws_bytes = gpu::paged_attention_decode_workspace_bytes(n, nh, nkv, d, bound);
  DeviceBuf<float> ws(ws_bytes / sizeof(float));
  DeviceBuf<int32_t> counters(gpu::paged_attention_decode_counters(n, nh, nkv));
  NANOVLLM_CUDA_CHECK(cudaMemset(counters.data(), 0, counters.bytes()));
  const float scale = 1.f / std::sqrt(float(d));
  // Two kernels (split, then combine), then one (combined in the split kernel: the engine's way).
  for (bool one_kernel : {false, true}) {
    int launches = 0;
    const double ms = median_ms(stream, 50, [&] {
      const int32_t* table = tables.data() + size_t(launches++ % sets) * n * width;
      gpu::paged_attention_decode(qkv.data(), nh, nkv, d, scale, kc.data(), vc.data(), bs, num_blocks, n,
                                  lens.data(), table, width, bound, out.data(), ws.data(), ws.bytes(), stream,
                                  one_kernel ? counters.data() : nullptr);
    });
    EXPECT_EQ(count_nonfinite(out), 0u);
    const double keys = std::accumulate(ctx.begin(), ctx.end(), 0.0);
    const double bytes = 4.0 * keys * nkv * d + double(n) * nh * d * 2 * 2;  // K, V, q, out
    const double flops = 4.0 * nh * keys * d;
    std::printf("[ CudaAttention ] timing decode  %s, %d/%d heads, d=%d, bs=%d, %s: %.3f ms, %.0f GB/s, "
                "%.2f TFLOP/s\n", label, nh, nkv, d, bs, one_kernel ? "one kernel" : "two kernels", ms,
                bytes / ms / 1e6, flops / ms / 1e9);
  }
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


// ---- Prefill tile edges (appended; the d = 128 path runs 128 packed rows per CTA, 64 keys per
// tile, three tiles in flight) ----

// q_len around the 128-row tile for groups 1 and 8 (tile edges fall mid-row-group and mid-warp),
// non-power-of-two and tiny block sizes, chunks over long cached prefixes, decode rows in the
// same launch, a context shorter than one key tile and prefixes ending mid-tile.
TEST(CudaAttentionPrefill, WideTileEdges) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"prefill tile edges"};
  const bool small = sanitizing();
  for (int group : {1, 2, 4, 8}) {
    const int nkv = group == 8 ? 1 : 2;
    std::vector<Seq> seqs = {{1, 1}, {127, 127}, {128, 128}, {129, 129}, {1, 65}, {63, 63 + 64},
                             {17, 17 + 191}, {1, 3000}, {16, 16}, {15, 15}};
    if (!small) {
      seqs.push_back({257, 4097});  // a chunk over a long cached prefix
      seqs.push_back({600, 600});
      seqs.push_back({200, 200 + 2049});
    }
    std::shuffle(seqs.begin(), seqs.end(), rng());
    for (int bs : {7, 64}) {
      const Batch b = make_batch(nkv * group, nkv, 128, bs, seqs, group % 2 ? 3.f : 1.f);
      report.add(check_prefill(stream, b));
    }
  }
  // Block size 1 and 256, decode rows only, one long chunk at the end of a long prefix.
  report.add(check_prefill(stream, make_batch(16, 8, 128, 1, {{1, 300}, {40, 240}, {1, 2}})));
  report.add(check_prefill(stream, make_batch(32, 8, 128, 256, {{1, 700}, {1, 1}, {1, 129}, {1, 64}})));
  if (!small) report.add(check_prefill(stream, make_batch(32, 8, 128, 256, {{1024, 6000}, {1, 5999}})));
}

// A prompt's output bits do not depend on the batch around it: the same sequence (same q, K, V)
// alone, and after other sequences (its rows shifted in the packed row space of the launch).
TEST(CudaAttentionPrefill, BatchInvariant) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"prefill batch invariance"};
  const int nh = 16, nkv = 8, d = 128, bs = 16;
  const Seq mine = sanitizing() ? Seq{45, 150} : Seq{300, 1100};
  const Batch alone = make_batch(nh, nkv, d, bs, {mine});
  // Off Hopper, the last batch is large enough (>= 2 CTAs per SM) for the launcher to pick the
  // dual d = 128 variant, where the lone sequence gets wide: the bits must still match. On
  // Hopper every d = 128 launch runs the wgmma kernel.
  std::vector<std::vector<Seq>> others = {{{1, 50}, {3, 3}, mine}, {{77, 500}, mine, {1, 9}}};
  if (!sanitizing()) others.push_back({{2600, 2600}, mine});
  std::vector<uint16_t> first;
  {
    const std::vector<float> ref = reference(alone);
    DeviceBatch dv(alone);
    run_prefill(dv, alone, stream);
    stream.sync();
    first = dv.out.download();
    const Stats st = compare(first, ref, alone.T * nh, d);
    EXPECT_CLOSE(st, alone.what());
    report.add(st);
  }
  for (const std::vector<Seq>& seqs : others) {
    Batch b = make_batch(nh, nkv, d, bs, seqs);
    const int at = int(std::find_if(seqs.begin(), seqs.end(), [&](const Seq& q) { return q.q_len == mine.q_len; }) - seqs.begin());
    // Copy the lone sequence's q rows and its keys into place.
    const int64_t row = b.row(), kv_row = int64_t(nkv) * d;
    for (int i = 0; i < mine.q_len; ++i)
      for (int64_t e = 0; e < int64_t(nh) * d; ++e) {
        b.qkv.bits[size_t((b.cu[at] + i) * row + e)] = alone.qkv.bits[size_t(i * row + e)];
        b.qkv.f[size_t((b.cu[at] + i) * row + e)] = alone.qkv.f[size_t(i * row + e)];
      }
    for (int t = 0; t < mine.ctx; ++t) {
      const int64_t src = (int64_t(alone.tables[t / bs]) * bs + t % bs) * kv_row;
      const int64_t dst = (int64_t(b.tables[size_t(at) * b.max_blocks + t / bs]) * bs + t % bs) * kv_row;
      for (int64_t e = 0; e < kv_row; ++e) {
        b.kc.bits[size_t(dst + e)] = alone.kc.bits[size_t(src + e)];
        b.kc.f[size_t(dst + e)] = alone.kc.f[size_t(src + e)];
        b.vc.bits[size_t(dst + e)] = alone.vc.bits[size_t(src + e)];
        b.vc.f[size_t(dst + e)] = alone.vc.f[size_t(src + e)];
      }
    }
    const std::vector<float> ref = reference(b);
    DeviceBatch dv(b);
    run_prefill(dv, b, stream);
    stream.sync();
    const std::vector<uint16_t> out = dv.out.download();
    const Stats st = compare(out, ref, b.T * nh, d);
    EXPECT_CLOSE(st, b.what());
    report.add(st);
    size_t diff = 0;
    const size_t n = size_t(mine.q_len) * nh * d, off = size_t(b.cu[at]) * nh * d;
    for (size_t i = 0; i < n; ++i) diff += out[off + i] != first[i];
    EXPECT_EQ(diff, 0u) << b.what() << ": output bits differ from the lone prefill";
  }
}

// ---- The d = 128 prefill variants (paged_attention_prefill.cu: "wide", 8 warps x 16 rows, one
// CTA per SM; "dual", 4 warps x 32 rows, two CTAs per SM; paged_attention_prefill_wgmma.cu:
// "wgmma", Hopper only, the default there), each forced ----

// Runs b under `variant`, checks it against ref, returns the output bits.
std::vector<uint16_t> prefill_variant_bits(Stream& stream, const Batch& b, const std::vector<float>& ref,
                                           const char* variant, Report& report) {
  SCOPED_TRACE(b.what() + " variant=" + variant);
  const ForcePrefillVariant force(variant);
  DeviceBatch d(b);
  run_prefill(d, b, stream);
  stream.sync();
  std::vector<uint16_t> out = d.out.download();
  EXPECT_EQ(d.out.bad_guards(), 0u) << "wrote outside out";
  const Stats st = compare(out, ref, b.T * b.nh, b.d);
  EXPECT_CLOSE(st, b.what() + " variant=" + variant);
  report.add(st);
  return out;
}

// Tile edges of both variants (q_len around their 16- and 32-row warp slices and 128-row tiles,
// groups 1 to 8 including 3, block sizes 1, 7, 64, 256, decode rows, empty query runs, chunks
// over long prefixes): each matches the reference, and the two give the same bits for every
// row. The launcher picks a variant by the size of the whole launch, so this bit equality is
// what keeps a prompt's output independent of the batch around it.
TEST(CudaAttentionPrefill, D128VariantsAgree) {
  REQUIRE_GPU();
  Stream stream;
  Report wide{"prefill d128 wide"}, dual{"prefill d128 dual"}, wgmma{"prefill d128 wgmma"};
  const bool has_wgmma = gpu::paged_attention_prefill_uses_wgmma();
  std::printf("[ CudaAttention ] prefill d128 wgmma kernel: %s\n", has_wgmma ? "available, checked" : "not available here");
  const bool small = sanitizing();
  for (int group : {1, 2, 3, 4, 8}) {
    const int nkv = group == 8 ? 1 : 2;
    std::vector<Seq> seqs = {{1, 1},    {15, 15},   {16, 16},   {31, 31}, {32, 32},  {33, 33},
                             {127, 127}, {128, 128}, {129, 129}, {1, 65},  {63, 127}, {17, 208},
                             {0, 0},    {1, small ? 300 : 3000}};
    if (!small) {
      seqs.push_back({257, 4097});  // a chunk over a long cached prefix
      seqs.push_back({600, 600});
    }
    std::shuffle(seqs.begin(), seqs.end(), rng());
    for (int bs : {1, 7, 64, 256}) {
      if (small && bs != 7) continue;
      const Batch b = make_batch(nkv * group, nkv, 128, bs, seqs, group % 2 ? 3.f : 1.f);
      const std::vector<float> ref = reference(b);
      const std::vector<uint16_t> w = prefill_variant_bits(stream, b, ref, "wide", wide);
      const std::vector<uint16_t> u = prefill_variant_bits(stream, b, ref, "dual", dual);
      size_t diff = 0;
      for (size_t i = 0; i < w.size(); ++i) diff += w[i] != u[i];
      EXPECT_EQ(diff, 0u) << b.what() << ": the wide and dual variants' output bits differ";
      // The Hopper kernel: its own bits (128-key tiles, other MMAs), checked on its own.
      if (has_wgmma) prefill_variant_bits(stream, b, ref, "wgmma", wgmma);
    }
  }
}

}  // namespace
}  // namespace nanovllm
