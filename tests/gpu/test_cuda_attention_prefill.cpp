// Prefill attention against the CPU reference: mixed batches, tile edges, batch invariance and
// the d = 128 variants agreeing bit for bit (the shared pieces and what they check:
// attention_test_util.h, test_cuda_attention.cpp).
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

namespace nanovllm {
namespace {

using namespace attention_test;

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
