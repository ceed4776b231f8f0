// The block manager under long random sequences of allocate / append / commit / free /
// preempt, with every invariant checked after every operation, and its prefix-cache rules.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <set>

#include "runtime/error.h"

#include "engine/block_manager.h"

namespace nanovllm {
namespace {

std::unique_ptr<Sequence> make_seq(int64_t id, std::vector<int32_t> tokens) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->num_prompt_tokens = static_cast<int>(tokens.size());
  s->tokens = std::move(tokens);
  return s;
}

std::vector<const Sequence*> live_of(const std::vector<std::unique_ptr<Sequence>>& v) {
  std::vector<const Sequence*> out;
  for (const auto& s : v)
    if (!s->block_table.empty()) out.push_back(s.get());
  return out;
}

TEST(BlockManager, RandomOperationsKeepEveryInvariant) {
  std::mt19937 rng(std::random_device{}());
  for (int block_size : {1, 4, 16, 64}) {
    for (bool prefix : {false, true}) {
      const int num_blocks = 64;
      BlockManager bm(num_blocks, block_size, prefix);
      std::vector<std::unique_ptr<Sequence>> seqs;
      // Prompts drawn from a few shared stems, so prefix hits happen.
      std::vector<std::vector<int32_t>> stems;
      for (int i = 0; i < 4; ++i) {
        std::vector<int32_t> s(std::uniform_int_distribution<int>(1, 3 * block_size + 2)(rng));
        for (auto& t : s) t = std::uniform_int_distribution<int>(0, 9)(rng);
        stems.push_back(s);
      }
      int64_t next_id = 0;
      for (int op = 0; op < 3000; ++op) {
        const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
        if (kind < 3) {  // new sequence
          std::vector<int32_t> t = stems[rng() % stems.size()];
          t.resize(std::uniform_int_distribution<size_t>(1, t.size())(rng));
          for (int extra = std::uniform_int_distribution<int>(0, block_size)(rng); extra > 0; --extra)
            t.push_back(std::uniform_int_distribution<int>(0, 9)(rng));
          auto s = make_seq(next_id++, t);
          if (bm.can_allocate(*s)) {
            bm.allocate(*s);
            ASSERT_LE(s->num_computed_tokens, s->num_tokens() - 1) << "at least one token must be computed";
            ASSERT_EQ(s->num_computed_tokens % block_size, 0);
            seqs.push_back(std::move(s));
          }
        } else if (kind < 7 && !seqs.empty()) {  // compute everything, then decode a token
          Sequence& s = *seqs[rng() % seqs.size()];
          if (s.block_table.empty()) continue;
          s.num_computed_tokens = s.num_tokens();
          bm.commit(s);
          if (bm.can_append(s, s.num_tokens() + 1)) {
            s.tokens.push_back(std::uniform_int_distribution<int>(0, 9)(rng));
            bm.append(s, s.num_tokens());
          }
        } else if (kind < 9 && !seqs.empty()) {  // finish
          const size_t i = rng() % seqs.size();
          bm.deallocate(*seqs[i]);
          seqs.erase(seqs.begin() + static_cast<long>(i));
        } else if (!seqs.empty()) {  // preempt and re-admit (recompute)
          Sequence& s = *seqs[rng() % seqs.size()];
          bm.deallocate(s);
          ++s.num_preemptions;
          if (bm.can_allocate(s)) bm.allocate(s);
        }
        ASSERT_NO_THROW(bm.check_invariants(live_of(seqs))) << "op " << op;
        ASSERT_EQ(bm.num_free_blocks() + [&] {
          std::set<int> used;
          for (const auto& s : seqs) used.insert(s->block_table.begin(), s->block_table.end());
          return static_cast<int>(used.size());
        }(), num_blocks);
      }
      for (auto& s : seqs) bm.deallocate(*s);
      seqs.clear();
      EXPECT_EQ(bm.num_free_blocks(), num_blocks) << "every block free at the end";
      EXPECT_NO_THROW(bm.check_invariants({}));
      if (prefix) EXPECT_GT(bm.hits(), 0u) << "shared stems must produce prefix hits";
      else EXPECT_EQ(bm.hits(), 0u);
    }
  }
}

TEST(BlockManager, SharedPrefixIsReusedWithExactReferenceCounts) {
  BlockManager bm(10, 4, true);
  auto a = make_seq(0, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  bm.allocate(*a);
  EXPECT_EQ(a->num_computed_tokens, 0);
  EXPECT_EQ(bm.hits(), 0u);
  EXPECT_EQ(bm.misses(), 2u);  // two full blocks computed afresh
  a->num_computed_tokens = 9;
  bm.commit(*a);
  auto b = make_seq(1, {1, 2, 3, 4, 5, 6, 7, 8, 42, 43});
  bm.allocate(*b);
  EXPECT_EQ(b->num_computed_tokens, 8);
  EXPECT_EQ(b->num_cached_tokens, 8);
  EXPECT_EQ(bm.hits(), 2u);
  EXPECT_EQ(b->block_table[0], a->block_table[0]);
  EXPECT_EQ(b->block_table[1], a->block_table[1]);
  EXPECT_NE(b->block_table[2], a->block_table[2]);
  EXPECT_EQ(bm.ref_count(a->block_table[0]), 2);
  EXPECT_EQ(bm.ref_count(a->block_table[2]), 1);
  // Different second block: only the first is shared.
  auto c = make_seq(2, {1, 2, 3, 4, 9, 9, 9, 9, 1});
  bm.allocate(*c);
  EXPECT_EQ(c->num_computed_tokens, 4);
  EXPECT_EQ(bm.ref_count(a->block_table[0]), 3);
  bm.deallocate(*a);
  bm.deallocate(*b);
  bm.deallocate(*c);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  // Freed blocks stay findable until reused.
  auto d = make_seq(3, {1, 2, 3, 4, 5, 6, 7, 8, 0});
  bm.allocate(*d);
  EXPECT_EQ(d->num_computed_tokens, 8);
}

TEST(BlockManager, AFullyCachedPromptStillComputesItsLastBlock) {
  BlockManager bm(8, 4, true);
  auto a = make_seq(0, {1, 2, 3, 4, 5, 6, 7, 8});
  bm.allocate(*a);
  a->num_computed_tokens = 8;
  bm.commit(*a);
  auto b = make_seq(1, {1, 2, 3, 4, 5, 6, 7, 8});
  bm.allocate(*b);
  EXPECT_EQ(b->num_computed_tokens, 4) << "the last block is recomputed, so the last token has logits";
  EXPECT_EQ(b->block_table[0], a->block_table[0]);
  EXPECT_NE(b->block_table[1], a->block_table[1]);
}

TEST(BlockManager, UncomputedBlocksAreNeverHit) {
  BlockManager bm(8, 4, true);
  auto a = make_seq(0, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  bm.allocate(*a);
  a->num_computed_tokens = 4;  // a prefill chunk: only the first block is computed
  bm.commit(*a);
  auto b = make_seq(1, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  bm.allocate(*b);
  EXPECT_EQ(b->num_computed_tokens, 4);
}

TEST(BlockManager, EvictsLeastRecentlyFreedAndKeepsPrefixRootsLongest) {
  BlockManager bm(4, 2, true);
  auto a = make_seq(0, {1, 2, 3, 4, 5});
  bm.allocate(*a);  // 3 blocks
  a->num_computed_tokens = 5;
  bm.commit(*a);
  bm.deallocate(*a);  // freed last-first: the root block is the most recently freed
  auto b = make_seq(1, {7, 7, 7, 7, 7});
  bm.allocate(*b);  // 3 fresh blocks: the never-used block, then a's tail blocks
  bm.deallocate(*b);
  auto c = make_seq(2, {1, 2, 9});
  bm.allocate(*c);
  EXPECT_EQ(c->num_computed_tokens, 2) << "a's first block survived eviction";
}

TEST(BlockManager, DoubleFreeIsCaught) {
  BlockManager bm(4, 2, false);
  auto a = make_seq(0, {1, 2, 3});
  bm.allocate(*a);
  std::vector<int32_t> table = a->block_table;
  bm.deallocate(*a);
  a->block_table = table;
  EXPECT_THROW(bm.deallocate(*a), Error);
}

}  // namespace
}  // namespace nanovllm
