// Every elementwise / normalisation CUDA kernel (kernels/cuda/ops.h) against the float32 CPU
// reference (kernels/cpu/cpu_ops.h), run on the same bf16-rounded inputs converted to float.
//
// - Fresh random inputs on every run (the seed is printed), never zeros, over many shapes;
//   both the 16-byte path and the element-at-a-time path (misaligned pointers, odd sizes).
// - Outputs are poisoned with 0xFFFF (a bf16 NaN) first, so an unwritten element fails; every
//   device buffer has poisoned guard elements on both sides that must stay untouched. In-place
//   kernels cannot be poisoned: there an element-wise tolerance shows each element changed.
// - bf16 outputs: ||out - ref|| / ||ref|| < 1e-2 for the whole output and for every row, every
//   element within 2^-6 |ref| + 1e-3 rms(row), and no NaN or infinity. Copies are bit-exact.
// The largest errors seen are printed per kernel ("max rel err"); scripts/gpu-check collects
// them. Without a GPU the tests are SKIPPED, except the argument checks, which run on the host.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"
#include "gpu_test_util.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

constexpr uint16_t kPoison = 0xFFFF;  // bf16 NaN

std::mt19937& rng() {
  static std::mt19937 gen = [] {
    const unsigned seed = std::random_device{}();
    std::printf("[ CudaKernels ] random seed %u\n", seed);
    return std::mt19937(seed);
  }();
  return gen;
}

// Random bf16 values: bits for the device, the same values as float for the reference.
struct Bf16Host {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};
Bf16Host random_bf16(size_t n, float mean, float stddev) {
  std::normal_distribution<float> dist(mean, stddev);
  Bf16Host h{std::vector<uint16_t>(n), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) {
    float v = dist(rng());
    if (v == 0.f) v = stddev;  // never zeros
    h.bits[i] = f32_to_bf16(v);
    h.f[i] = bf16_to_f32(h.bits[i]);
  }
  return h;
}

using test::DeviceBuf;
using test::Stream;
using Bf16Buf = DeviceBuf<uint16_t>;

struct Stats {
  double rel = 0;        // ||out - ref|| / ||ref|| over the whole output
  double worst_row = 0;  // the same, for the worst row
  int64_t nonfinite = 0;
  int64_t bad = 0;  // elements outside 2^-6 |ref| + 1e-3 rms(row)
};

Stats compare(const std::vector<uint16_t>& out, const std::vector<float>& ref, int64_t rows,
              int64_t cols) {
  Stats s;
  double num = 0, den = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double rn = 0, rd = 0;
    for (int64_t c = 0; c < cols; ++c) rd += double(ref[r * cols + c]) * ref[r * cols + c];
    const double row_rms = std::sqrt(rd / double(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const double o = bf16_to_f32(out[r * cols + c]), want = ref[r * cols + c];
      if (!std::isfinite(o)) {
        ++s.nonfinite;
        continue;
      }
      const double d = o - want;
      rn += d * d;
      if (std::abs(d) > std::ldexp(1.0, -6) * std::abs(want) + 1e-3 * row_rms) ++s.bad;
    }
    s.worst_row = std::max(s.worst_row, rd > 0 ? std::sqrt(rn / rd) : (rn > 0 ? INFINITY : 0.0));
    num += rn;
    den += rd;
  }
  s.rel = s.nonfinite ? INFINITY : (den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0));
  if (s.nonfinite) s.worst_row = INFINITY;
  return s;
}

// The largest errors seen by one test, printed at its end for scripts/gpu-check.
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
    std::printf("[ CudaKernels ] %-16s %4d cases  max rel err %.3e  (worst row %.3e)\n", kernel,
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

std::string shape(std::initializer_list<std::pair<const char*, int64_t>> kv) {
  std::string s;
  for (const auto& [k, v] : kv) s += std::string(s.empty() ? "" : " ") + k + "=" + std::to_string(v);
  return s;
}

TEST(CudaKernels, Embedding) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"embedding"};
  const int64_t V = 3001;
  for (int64_t H : {64, 1000, 1024, 4096, 999})
    for (int64_t T : {1, 7, 33, 257})
      for (bool misalign : {false, true}) {
        const std::string what = shape({{"H", H}, {"T", T}, {"misalign", misalign}});
        SCOPED_TRACE(what);
        const Bf16Host table = random_bf16(size_t(V * H), 0.f, 1.f);
        std::vector<int32_t> ids(T);
        std::uniform_int_distribution<int32_t> pick(0, int32_t(V - 1));
        for (auto& id : ids) id = pick(rng());
        ids[0] = int32_t(V - 1);
        if (T > 2) ids[1] = 0;
        if (T > 4) ids[T - 1] = misalign ? -1 : int32_t(V);  // out of range: a zero row
        std::vector<float> ref(T * H);
        cpu::embedding(ids.data(), table.f.data(), ref.data(), T, V, H);

        Bf16Buf d_table(V * H, misalign), d_out(T * H, misalign);
        DeviceBuf<int32_t> d_ids(T);
        d_table.upload(table.bits);
        d_ids.upload(ids);
        gpu::embedding(d_ids.data(), d_table.data(), d_out.data(), T, V, H, stream);
        stream.sync();
        const std::vector<uint16_t> out = d_out.download();
        EXPECT_EQ(d_out.bad_guards(), 0u);
        int64_t mismatched = 0;
        for (int64_t i = 0; i < T * H; ++i) mismatched += out[i] != f32_to_bf16(ref[i]);
        EXPECT_EQ(mismatched, 0) << "a gather is a copy: bits must match";
        report.add(compare(out, ref, T, H));
      }
}

// A step's pending input ids read from the previous sampling (async scheduling): every row
// with rows[t] >= 0 takes tokens[rows[t]], the others keep their id; against the CPU rule.
TEST(CudaKernels, FillSampledIds) {
  REQUIRE_GPU();
  Stream stream;
  for (int64_t T : {1, 2, 7, 128, 129, 1000, 16384}) {
    SCOPED_TRACE("T=" + std::to_string(T));
    const int64_t R = std::max<int64_t>(1, T / 3);
    std::vector<int32_t> ids(T), rows(T), tokens(R);
    std::uniform_int_distribution<int32_t> id(0, 151935), row(-1, int32_t(R - 1));
    for (auto& t : tokens) t = id(rng());
    for (int64_t t = 0; t < T; ++t) {
      ids[t] = id(rng());
      rows[t] = row(rng());
    }
    std::vector<int32_t> want = ids;
    for (int64_t t = 0; t < T; ++t)
      if (rows[t] >= 0) want[t] = tokens[rows[t]];
    DeviceBuf<int32_t> d_ids(T), d_rows(T), d_tokens(R);
    d_ids.upload(ids);
    d_rows.upload(rows);
    d_tokens.upload(tokens);
    gpu::fill_sampled_ids(d_ids.data(), d_rows.data(), d_tokens.data(), T, stream);
    stream.sync();
    EXPECT_EQ(d_ids.download(), want);
    EXPECT_EQ(d_ids.bad_guards(), 0u);
    EXPECT_EQ(d_rows.download(), rows) << "rows are read only";
    EXPECT_EQ(d_tokens.download(), tokens) << "tokens are read only";
  }
}

TEST(CudaKernels, RmsNorm) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"rms_norm"};
  const float eps = 1e-6f;
  for (int64_t H : {64, 1000, 1024, 4096, 999, 5120, 16384})
    for (int64_t T : {1, 7, 33, 129})
      for (int mode : {0, 1, 2}) {  // 0: aligned, 1: misaligned, 2: in place (out == x)
        const bool misalign = mode == 1;
        const std::string what = shape({{"H", H}, {"T", T}, {"mode", mode}});
        SCOPED_TRACE(what);
        Bf16Host x = random_bf16(size_t(T * H), 0.f, 1.f);
        // Rows of very different scale: the norm must take each row's own.
        std::uniform_real_distribution<float> scale(-3.f, 3.f);
        for (int64_t t = 0; t < T; ++t) {
          const float s = std::pow(10.f, scale(rng()));
          for (int64_t i = 0; i < H; ++i) {
            x.bits[t * H + i] = f32_to_bf16(x.f[t * H + i] * s);
            x.f[t * H + i] = bf16_to_f32(x.bits[t * H + i]);
          }
        }
        const Bf16Host w = random_bf16(size_t(H), 1.f, 0.3f);
        std::vector<float> ref(T * H);
        cpu::rms_norm(x.f.data(), w.f.data(), eps, ref.data(), T, H);

        Bf16Buf d_x(T * H, misalign), d_w(H, misalign), d_out(T * H, misalign);
        d_x.upload(x.bits);
        d_w.upload(w.bits);
        Bf16Buf& target = mode == 2 ? d_x : d_out;
        gpu::rms_norm(d_x.data(), d_w.data(), eps, target.data(), T, H, stream);
        stream.sync();
        const std::vector<uint16_t> out = target.download();
        EXPECT_EQ(target.bad_guards(), 0u);
        const Stats s = compare(out, ref, T, H);
        EXPECT_CLOSE(s, what);
        report.add(s);
      }
}

TEST(CudaKernels, AddRmsNorm) {
  REQUIRE_GPU();
  Stream stream;
  Report report_res{"  its residual"};  // declared first: printed after add_rms_norm's line
  Report report{"add_rms_norm"};
  const float eps = 1e-6f;
  for (int64_t H : {64, 1000, 1024, 4096, 999, 5120, 16384})
    for (int64_t T : {1, 7, 33, 129})
      for (bool misalign : {false, true}) {
        const std::string what = shape({{"H", H}, {"T", T}, {"misalign", misalign}});
        SCOPED_TRACE(what);
        const Bf16Host x = random_bf16(size_t(T * H), 0.f, 1.f);
        const Bf16Host res = random_bf16(size_t(T * H), 0.5f, 4.f);
        const Bf16Host w = random_bf16(size_t(H), 1.f, 0.3f);
        std::vector<float> ref_x = x.f, ref_res = res.f;
        cpu::add_rms_norm(ref_x.data(), ref_res.data(), w.f.data(), eps, T, H);

        Bf16Buf d_x(T * H, misalign), d_res(T * H, misalign), d_w(H, misalign);
        d_x.upload(x.bits);
        d_res.upload(res.bits);
        d_w.upload(w.bits);
        gpu::add_rms_norm(d_x.data(), d_res.data(), d_w.data(), eps, T, H, stream);
        stream.sync();
        const std::vector<uint16_t> out_x = d_x.download();
        EXPECT_EQ(d_x.bad_guards(), 0u);
        const std::vector<uint16_t> out_res = d_res.download();
        EXPECT_EQ(d_res.bad_guards(), 0u);
        const Stats sx = compare(out_x, ref_x, T, H), sr = compare(out_res, ref_res, T, H);
        EXPECT_CLOSE(sx, what + " (x)");
        EXPECT_CLOSE(sr, what + " (residual)");
        report.add(sx);
        report_res.add(sr);
      }
}

TEST(CudaKernels, SiluAndMul) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"silu_and_mul"};
  for (int64_t I : {64, 1000, 1024, 4096, 999, 3072, 11008})
    for (int64_t T : {1, 7, 33, 129})
      for (bool misalign : {false, true}) {
        const std::string what = shape({{"I", I}, {"T", T}, {"misalign", misalign}});
        SCOPED_TRACE(what);
        const Bf16Host gu = random_bf16(size_t(T * 2 * I), 0.f, 3.f);
        std::vector<float> ref(T * I);
        cpu::silu_and_mul(gu.f.data(), ref.data(), T, I);

        Bf16Buf d_gu(T * 2 * I, misalign), d_out(T * I, misalign);
        d_gu.upload(gu.bits);
        gpu::silu_and_mul(d_gu.data(), d_out.data(), T, I, stream);
        stream.sync();
        const std::vector<uint16_t> out = d_out.download();
        EXPECT_EQ(d_out.bad_guards(), 0u);
        const Stats s = compare(out, ref, T, I);
        EXPECT_CLOSE(s, what);
        report.add(s);
      }
}

// Random inputs of one qk_norm_rope call: qkv (T, (nh + 2 nkv) d), the q/k norm weights, a
// cos/sin table and positions (the first two at the table's ends). The table is random (any
// table is valid input, and unlike a real one its last columns are far from cos 1, sin 0, so
// an element left unrotated shows).
struct RopeInputs {
  static constexpr int64_t max_pos = 4096;
  Bf16Host qkv, qw, kw;
  std::vector<float> cos_sin;
  std::vector<int32_t> pos;
};
RopeInputs random_rope_inputs(int64_t T, int nh, int nkv, int d) {
  RopeInputs in;
  in.qkv = random_bf16(size_t(T * (nh + 2 * nkv) * d), 0.f, 3.f);
  in.qw = random_bf16(size_t(d), 1.f, 0.3f);
  in.kw = random_bf16(size_t(d), 1.f, 0.3f);
  in.cos_sin.resize(size_t(RopeInputs::max_pos * d));
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  for (auto& c : in.cos_sin) c = unit(rng());
  in.pos.resize(size_t(T));
  std::uniform_int_distribution<int32_t> pick(0, int32_t(RopeInputs::max_pos - 1));
  for (auto& p : in.pos) p = pick(rng());
  in.pos[0] = int32_t(RopeInputs::max_pos - 1);
  if (T > 1) in.pos[1] = 0;
  return in;
}

// One qk_norm_rope case against the CPU reference.
Stats run_qk_norm_rope(Stream& stream, int64_t T, int nh, int nkv, int d, bool with_norm,
                       bool misalign) {
  const int64_t row = int64_t(nh + 2 * nkv) * d;
  const int64_t max_pos = RopeInputs::max_pos;
  const float eps = 1e-6f;
  const RopeInputs in = random_rope_inputs(T, nh, nkv, d);
  const Bf16Host &qkv = in.qkv, &qw = in.qw, &kw = in.kw;
  const std::vector<float>& cos_sin = in.cos_sin;
  const std::vector<int32_t>& pos = in.pos;

  std::vector<float> ref = qkv.f;
  cpu::qk_norm_rope(ref.data(), T, nh, nkv, d, with_norm ? qw.f.data() : nullptr,
                    with_norm ? kw.f.data() : nullptr, eps, cos_sin.data(), max_pos, pos.data());

  Bf16Buf d_qkv(T * row, misalign), d_qw(d), d_kw(d);
  DeviceBuf<float> d_cs(max_pos * d);
  DeviceBuf<int32_t> d_pos(T);
  d_qkv.upload(qkv.bits);
  d_qw.upload(qw.bits);
  d_kw.upload(kw.bits);
  d_cs.upload(cos_sin);
  d_pos.upload(pos);
  gpu::qk_norm_rope(d_qkv.data(), T, nh, nkv, d, with_norm ? d_qw.data() : nullptr,
                    with_norm ? d_kw.data() : nullptr, eps, d_cs.data(), max_pos, d_pos.data(),
                    stream);
  stream.sync();
  const std::vector<uint16_t> out = d_qkv.download();
  EXPECT_EQ(d_qkv.bad_guards(), 0u);
  // v must come back bit for bit.
  int64_t v_changed = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = int64_t(nh + nkv) * d; i < row; ++i) v_changed += out[t * row + i] != qkv.bits[t * row + i];
  EXPECT_EQ(v_changed, 0) << "v heads must be untouched";
  return compare(out, ref, T, row);
}

TEST(CudaKernels, QkNormRope) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"qk_norm_rope"};
  const int64_t Ts[] = {1, 7, 33, 65};
  int k = 0;
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8})
      for (int nkv : {1, 2, 4})
        for (bool with_norm : {true, false}) {
          const int64_t T = Ts[k++ % 4];
          const int nh = nkv * group;
          const std::string what = shape({{"d", d}, {"nh", nh}, {"nkv", nkv}, {"T", T}, {"norm", with_norm}});
          SCOPED_TRACE(what);
          const Stats s = run_qk_norm_rope(stream, T, nh, nkv, d, with_norm, false);
          EXPECT_CLOSE(s, what);
          report.add(s);
        }
  // Other head sizes (16-byte path at 16, 32, 512; element path at 8, 80, 96, 100) and the
  // element path for a usual size through a misaligned qkv.
  struct Case { int d, nh, nkv; bool misalign; };
  for (const Case c : {Case{16, 4, 2, false}, Case{32, 8, 2, false}, Case{512, 4, 1, false},
                       Case{8, 2, 1, false}, Case{80, 6, 2, false}, Case{96, 8, 8, false},
                       Case{100, 4, 4, false}, Case{128, 16, 2, true}, Case{64, 4, 4, true}})
    for (int64_t T : {3, 31}) {
      const std::string what = shape({{"d", c.d}, {"nh", c.nh}, {"nkv", c.nkv}, {"T", T}, {"misalign", c.misalign}});
      SCOPED_TRACE(what);
      const Stats s = run_qk_norm_rope(stream, T, c.nh, c.nkv, c.d, true, c.misalign);
      EXPECT_CLOSE(s, what);
      report.add(s);
    }
}

// Distinct slots for T tokens in a cache of num_slots: the first half a contiguous run from a
// random offset (crossing block boundaries), the rest scattered; about one in five is -1.
std::vector<int32_t> make_slot_mapping(int64_t T, int64_t num_slots) {
  std::vector<int32_t> slots(num_slots);
  std::iota(slots.begin(), slots.end(), 0);
  const int64_t start = std::uniform_int_distribution<int64_t>(0, num_slots - 1)(rng());
  std::rotate(slots.begin(), slots.begin() + start, slots.end());
  std::shuffle(slots.begin() + T / 2, slots.end(), rng());
  std::vector<int32_t> map(slots.begin(), slots.begin() + T);
  std::bernoulli_distribution skip(0.2);
  for (auto& s : map)
    if (skip(rng())) s = -1;
  if (T > 1) map[T - 1] = -1;
  return map;
}

void run_store_kv(Stream& stream, Report& report, int64_t T, int nh, int nkv, int d,
                  int block_size, bool misalign) {
  const std::string what = shape({{"T", T}, {"nh", nh}, {"nkv", nkv}, {"d", d}, {"block_size", block_size}, {"misalign", misalign}});
  SCOPED_TRACE(what);
  const int64_t row = int64_t(nh + 2 * nkv) * d, kv_width = int64_t(nkv) * d;
  const int64_t num_blocks = (T + block_size - 1) / block_size + 3;
  const int64_t num_slots = num_blocks * block_size;
  const Bf16Host qkv = random_bf16(size_t(T * row), 0.f, 2.f);
  const std::vector<int32_t> map = make_slot_mapping(T, num_slots);

  // Reference: the CPU op over caches holding the poison, converted back to bits.
  std::vector<float> kc(num_slots * kv_width, bf16_to_f32(kPoison)), vc = kc;
  cpu::store_kv(qkv.f.data(), T, nh, nkv, d, kc.data(), vc.data(), num_slots, map.data());

  Bf16Buf d_qkv(T * row, misalign), d_kc(num_slots * kv_width, misalign), d_vc(num_slots * kv_width, misalign);
  DeviceBuf<int32_t> d_map(T);
  d_qkv.upload(qkv.bits);
  d_map.upload(map);
  gpu::store_kv(d_qkv.data(), T, nh, nkv, d, d_kc.data(), d_vc.data(), num_slots, d_map.data(), stream);
  stream.sync();
  const std::vector<uint16_t> out_k = d_kc.download();
  EXPECT_EQ(d_kc.bad_guards(), 0u);
  const std::vector<uint16_t> out_v = d_vc.download();
  EXPECT_EQ(d_vc.bad_guards(), 0u);
  int64_t mismatched = 0;
  for (int64_t i = 0; i < num_slots * kv_width; ++i) {
    mismatched += out_k[i] != f32_to_bf16(kc[i]);
    mismatched += out_v[i] != f32_to_bf16(vc[i]);
  }
  EXPECT_EQ(mismatched, 0) << "cache bits differ (written slots must be copies, others untouched)";
  report.add(Stats{mismatched ? 1.0 : 0.0, mismatched ? 1.0 : 0.0, 0, mismatched});
}

TEST(CudaKernels, StoreKv) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"store_kv"};
  const int block_sizes[] = {16, 32, 64, 128, 256};
  const int64_t Ts[] = {1, 37, 300};
  int k = 0;
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8})
      for (int nkv : {1, 2, 8}) {
        const int bs = block_sizes[k % 5];
        const int64_t T = Ts[k % 3];
        ++k;
        run_store_kv(stream, report, T, nkv * group, nkv, d, bs, false);
      }
  for (int bs : block_sizes) {
    run_store_kv(stream, report, 300, 16, 2, 128, bs, true);  // misaligned: element path
    run_store_kv(stream, report, 77, 4, 4, 100, bs, false);   // d % 8 != 0: element path
  }
}

// qk_norm_rope_store_kv against qk_norm_rope then store_kv on the same inputs (each checked
// against the CPU reference above): qkv and both caches must come back bit for bit the same,
// the caches' unwritten rows still poisoned, no guard byte touched.
void run_qk_norm_rope_store_kv(Stream& stream, Report& report, int64_t T, int nh, int nkv, int d,
                               int block_size, bool misalign) {
  const std::string what = shape({{"T", T}, {"nh", nh}, {"nkv", nkv}, {"d", d}, {"block_size", block_size},
                                  {"misalign", misalign}});
  SCOPED_TRACE(what);
  const int64_t row = int64_t(nh + 2 * nkv) * d, kv_width = int64_t(nkv) * d, max_pos = RopeInputs::max_pos;
  const int64_t num_slots = ((T + block_size - 1) / block_size + 3) * block_size;
  const RopeInputs in = random_rope_inputs(T, nh, nkv, d);
  const Bf16Host &qkv = in.qkv, &qw = in.qw, &kw = in.kw;
  const std::vector<float>& cos_sin = in.cos_sin;
  const std::vector<int32_t>& pos = in.pos;
  std::vector<int32_t> map = make_slot_mapping(T, num_slots);
  if (std::count(map.begin(), map.end(), -1) == std::ptrdiff_t(T)) map[0] = 0;  // store at least one token
  DeviceBuf<float> d_cs(max_pos * d);
  DeviceBuf<int32_t> d_pos(T), d_map(T);
  Bf16Buf d_qw(d), d_kw(d);
  d_cs.upload(cos_sin);
  d_pos.upload(pos);
  d_map.upload(map);
  d_qw.upload(qw.bits);
  d_kw.upload(kw.bits);

  // [0]: two ops, [1]: fused.
  std::vector<uint16_t> out_qkv[2], out_k[2], out_v[2];
  size_t guards = 0;
  for (int fused = 0; fused < 2; ++fused) {
    Bf16Buf d_qkv(T * row, misalign), d_kc(num_slots * kv_width, misalign), d_vc(num_slots * kv_width, misalign);
    d_qkv.upload(qkv.bits);
    if (fused) {
      gpu::qk_norm_rope_store_kv(d_qkv.data(), T, nh, nkv, d, d_qw.data(), d_kw.data(), 1e-6f, d_cs.data(), max_pos,
                                 d_pos.data(), d_kc.data(), d_vc.data(), num_slots, d_map.data(), stream);
    } else {
      gpu::qk_norm_rope(d_qkv.data(), T, nh, nkv, d, d_qw.data(), d_kw.data(), 1e-6f, d_cs.data(), max_pos,
                        d_pos.data(), stream);
      gpu::store_kv(d_qkv.data(), T, nh, nkv, d, d_kc.data(), d_vc.data(), num_slots, d_map.data(), stream);
    }
    stream.sync();
    out_qkv[fused] = d_qkv.download();
    guards += d_qkv.bad_guards();
    out_k[fused] = d_kc.download();
    guards += d_kc.bad_guards();
    out_v[fused] = d_vc.download();
    guards += d_vc.bad_guards();
  }
  EXPECT_EQ(guards, 0u);
  int64_t written = 0;
  for (uint16_t b : out_k[1]) written += b != kPoison;
  EXPECT_GT(written, 0) << "no key was stored";
  const int64_t mismatched = (out_qkv[0] != out_qkv[1]) + (out_k[0] != out_k[1]) + (out_v[0] != out_v[1]);
  EXPECT_EQ(mismatched, 0) << "the fused op must write what qk_norm_rope + store_kv write";
  report.add(Stats{mismatched ? 1.0 : 0.0, mismatched ? 1.0 : 0.0, 0, mismatched});
}

TEST(CudaKernels, QkNormRopeStoreKv) {
  REQUIRE_GPU();
  Stream stream;
  Report report{"qk_norm_rope_store_kv"};
  const int block_sizes[] = {1, 16, 64, 256};
  const int64_t Ts[] = {1, 2, 37, 300};
  int k = 0;
  for (int d : {64, 128, 256})
    for (int group : {1, 2, 4, 8})
      for (int nkv : {1, 2, 8}) {
        run_qk_norm_rope_store_kv(stream, report, Ts[k % 4], nkv * group, nkv, d, block_sizes[k % 4], false);
        ++k;
      }
  // The element path: misaligned buffers, and head sizes the 16-byte path does not take.
  run_qk_norm_rope_store_kv(stream, report, 33, 16, 2, 128, 16, true);
  run_qk_norm_rope_store_kv(stream, report, 9, 6, 2, 80, 16, false);
  run_qk_norm_rope_store_kv(stream, report, 9, 4, 4, 100, 32, false);
  run_qk_norm_rope_store_kv(stream, report, 5, 2, 1, 8, 4, false);
}

// Bad arguments are refused on the host, before any CUDA call, so this runs without a GPU.
TEST(CudaKernelsArgs, RejectedBeforeAnyLaunch) {
  void* p = reinterpret_cast<void*>(uintptr_t{256});  // never dereferenced: the checks throw first
  const float* fp = static_cast<const float*>(p);
  const int32_t* ip = static_cast<const int32_t*>(p);
  EXPECT_THROW(gpu::qk_norm_rope(p, 4, 4, 2, 63, p, p, 1e-6f, fp, 16, ip, nullptr), Error);
  EXPECT_THROW(gpu::qk_norm_rope(p, 4, 4, 2, 1024, p, p, 1e-6f, fp, 16, ip, nullptr), Error);
  EXPECT_THROW(gpu::qk_norm_rope(p, 4, 4, 2, 128, p, p, 1e-6f, nullptr, 16, ip, nullptr), Error);
  EXPECT_THROW(gpu::qk_norm_rope(p, 4, 4, 2, 128, p, p, 1e-6f, fp, 0, ip, nullptr), Error);
  EXPECT_THROW(gpu::rms_norm(p, p, 1e-6f, p, -1, 64, nullptr), Error);
  EXPECT_THROW(gpu::rms_norm(p, p, 1e-6f, p, 4, 0, nullptr), Error);
  EXPECT_THROW(gpu::rms_norm(nullptr, p, 1e-6f, p, 4, 64, nullptr), Error);
  // Too wide for one block on the element-at-a-time path (odd H).
  EXPECT_THROW(gpu::rms_norm(p, p, 1e-6f, p, 4, 16385, nullptr), Error);
  EXPECT_THROW(gpu::add_rms_norm(p, p, p, 1e-6f, 4, 64, nullptr), Error);  // x aliases residual
  EXPECT_THROW(gpu::embedding(ip, p, p, 4, 0, 64, nullptr), Error);
  EXPECT_THROW(gpu::silu_and_mul(p, nullptr, 4, 64, nullptr), Error);
  EXPECT_THROW(gpu::store_kv(p, 4, 4, 0, 128, p, p, 64, ip, nullptr), Error);
  EXPECT_THROW(gpu::store_kv(p, 4, 4, 2, 128, p, p, 64, nullptr, nullptr), Error);
  // T == 0 is a no-op that touches nothing.
  EXPECT_NO_THROW(gpu::rms_norm(nullptr, nullptr, 1e-6f, nullptr, 0, 64, nullptr));
  EXPECT_NO_THROW(gpu::store_kv(nullptr, 0, 4, 2, 128, nullptr, nullptr, 64, nullptr, nullptr));
  int32_t* slots = static_cast<int32_t*>(p);
  void* p2 = reinterpret_cast<void*>(uintptr_t{512});
  EXPECT_THROW(gpu::qk_norm_rope_store_kv(p, 4, 4, 2, 128, p, p, 1e-6f, fp, 16, ip, p, p, 64, slots, nullptr),
               Error);  // k_cache == v_cache
  EXPECT_THROW(gpu::qk_norm_rope_store_kv(p, 4, 4, 0, 128, p, p, 1e-6f, fp, 16, ip, p, p2, 64, slots, nullptr),
               Error);  // no KV heads to store
  EXPECT_THROW(gpu::qk_norm_rope_store_kv(p, 4, 4, 2, 128, p, p, 1e-6f, fp, 16, ip, p, nullptr, 64, slots, nullptr),
               Error);
  EXPECT_THROW(gpu::qk_norm_rope_store_kv(p, 4, 4, 2, 63, p, p, 1e-6f, fp, 16, ip, p, p2, 64, slots, nullptr),
               Error);
  try {
    gpu::qk_norm_rope(p, 4, 4, 2, 63, p, p, 1e-6f, fp, 16, ip, nullptr);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qk_norm_rope"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("63"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nanovllm

namespace nanovllm {
namespace {

// Informational (no timed assertions): each elementwise kernel at a prefill step's size
// (16,384 tokens of Qwen3-0.6B: H 1024, I 3072, 16 / 8 heads of 128) and at a decode step's
// (256 tokens), best of 20 launches, with the bytes each must move (read + write) and the
// bandwidth that gives. docs/performance.md records the lines against the copy ceiling.
TEST(CudaKernelsPerf, ElementwiseTiming) {
  REQUIRE_GPU();
  if (std::getenv("NANOVLLM_GPU_SANITIZER")) GTEST_SKIP() << "no timings under compute-sanitizer";
  const int64_t H = 1024, I = 3072, V = 151936;
  const int nh = 16, nkv = 8, d = 128;
  cudaEvent_t e0, e1;
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e0));
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e1));
  auto time_it = [&](const char* name, int64_t T, double bytes, const std::function<void()>& launch) {
    launch();
    float best = 1e30f;
    for (int r = 0; r < 20; ++r) {
      NANOVLLM_CUDA_CHECK(cudaEventRecord(e0));
      launch();
      NANOVLLM_CUDA_CHECK(cudaEventRecord(e1));
      NANOVLLM_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      best = std::min(best, ms);
    }
    std::printf("[ CudaKernels ] timing %-13s T=%-6lld %8.2f us %8.1f GB/s\n", name, static_cast<long long>(T),
                best * 1e3, bytes / (best * 1e-3) / 1e9);
  };
  for (int64_t T : {int64_t{16384}, int64_t{256}}) {
    const int64_t W = int64_t{nh + 2 * nkv} * d;
    Bf16Buf x(T * H), res(T * H), w(H), gate_up(T * 2 * I), act(T * I), qkv(T * W), table(V * H);
    Bf16Buf kc(T * nkv * d), vc(T * nkv * d), qn(d), kn(d);
    DeviceBuf<float> cs(4096 * d);
    DeviceBuf<int32_t> ids(T), pos(T), slots(T);
    std::vector<int32_t> h(T);
    for (int64_t i = 0; i < T; ++i) h[i] = static_cast<int32_t>((i * 7919) % V);
    ids.upload(h);
    for (int64_t i = 0; i < T; ++i) h[i] = static_cast<int32_t>(i % 4096);
    pos.upload(h);
    for (int64_t i = 0; i < T; ++i) h[i] = static_cast<int32_t>(i);
    slots.upload(h);
    const double row = 2.0 * H;  // bytes of one bf16 hidden row
    time_it("embedding", T, 2 * row * T, [&] { gpu::embedding(ids.data(), table.data(), x.data(), T, V, H, nullptr); });
    time_it("rms_norm", T, 2 * row * T, [&] { gpu::rms_norm(x.data(), w.data(), 1e-6f, res.data(), T, H, nullptr); });
    time_it("add_rms_norm", T, 4 * row * T,
            [&] { gpu::add_rms_norm(x.data(), res.data(), w.data(), 1e-6f, T, H, nullptr); });
    time_it("silu_and_mul", T, 3.0 * 2 * I * T, [&] { gpu::silu_and_mul(gate_up.data(), act.data(), T, I, nullptr); });
    time_it("qk_norm_rope", T, 2.0 * 2 * (nh + nkv) * d * T,
            [&] { gpu::qk_norm_rope(qkv.data(), T, nh, nkv, d, qn.data(), kn.data(), 1e-6f, cs.data(), 4096, pos.data(),
                                    nullptr); });
    time_it("store_kv", T, 2.0 * 2 * 2 * nkv * d * T,
            [&] { gpu::store_kv(qkv.data(), T, nh, nkv, d, kc.data(), vc.data(), T, slots.data(), nullptr); });
    // The two above as one kernel: q, k read and written, v read, k and v written to the cache.
    time_it("qk_rope_store", T, 2.0 * (2 * (nh + nkv) + 3 * nkv) * d * T,
            [&] { gpu::qk_norm_rope_store_kv(qkv.data(), T, nh, nkv, d, qn.data(), kn.data(), 1e-6f, cs.data(), 4096,
                                             pos.data(), kc.data(), vc.data(), T, slots.data(), nullptr); });
  }
  {  // an 8B model's widths (Llama-3.1-8B: H 4096, I 14336) at a prefill step of 16,384 tokens
    const int64_t T = 16384, H8 = 4096, I8 = 14336;
    Bf16Buf x(T * H8), res(T * H8), w(H8), gate_up(T * 2 * I8), act(T * I8);
    time_it("add_rms_norm", T, 8.0 * H8 * T,
            [&] { gpu::add_rms_norm(x.data(), res.data(), w.data(), 1e-6f, T, H8, nullptr); });
    time_it("silu_and_mul", T, 3.0 * 2 * I8 * T, [&] { gpu::silu_and_mul(gate_up.data(), act.data(), T, I8, nullptr); });
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

}  // namespace
}  // namespace nanovllm
