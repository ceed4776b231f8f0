#include "engine/block_manager.h"

// Inline xxHash: no shared library to carry to the GPU machine.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <string>

#include "runtime/error.h"

namespace nanovllm {

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), prefix_caching_(enable_prefix_caching), blocks_(num_blocks) {
  if (num_blocks <= 0 || block_size <= 0)
    throw Error("BlockManager: need a positive number of blocks and block size (got " +
                std::to_string(num_blocks) + " blocks of " + std::to_string(block_size) + ")");
  for (int b = 0; b < num_blocks; ++b) blocks_[b].free_pos = free_.insert(free_.end(), b);
}

uint64_t BlockManager::chain_hash(uint64_t parent, const int32_t* tokens, int n) {
  // The parent's hash seeds this block's: equal hashes mean equal whole prefixes (up to
  // collisions, which find_cached rules out).
  return XXH3_64bits_withSeed(tokens, sizeof(int32_t) * static_cast<size_t>(n), parent);
}

int BlockManager::find_cached(uint64_t hash, uint64_t parent, const int32_t* tokens) const {
  auto it = hash_to_block_.find(hash);
  if (it == hash_to_block_.end()) return -1;
  const Block& b = blocks_[it->second];
  // A 64-bit hash can collide: the hit counts only if the block holds these very tokens
  // after the same parent.
  if (b.parent_hash != parent || !std::equal(b.tokens.begin(), b.tokens.end(), tokens)) return -1;
  return it->second;
}

void BlockManager::ref(int block) {
  Block& b = blocks_[block];
  if (b.ref_count == 0) free_.erase(b.free_pos);
  ++b.ref_count;
}

void BlockManager::unref(int block) {
  Block& b = blocks_[block];
  if (b.ref_count <= 0) throw Error("BlockManager: block " + std::to_string(block) + " freed twice");
  if (--b.ref_count == 0) b.free_pos = free_.insert(free_.end(), block);
}

int BlockManager::take_free_block() {
  if (free_.empty()) throw Error("BlockManager: no free KV-cache block (the scheduler should have checked)");
  const int id = free_.front();
  Block& b = blocks_[id];
  if (b.cached) {
    auto it = hash_to_block_.find(b.hash);
    if (it != hash_to_block_.end() && it->second == id) hash_to_block_.erase(it);
  }
  b.cached = false;
  b.hash = b.parent_hash = 0;
  b.tokens.clear();
  ref(id);
  return id;
}

bool BlockManager::can_allocate(const Sequence& seq) const {
  const int n = seq.num_tokens();
  const int nblocks = blocks_for(n);
  int from_free = 0;  // blocks that must come off the free list: new ones, and hits on free blocks
  uint64_t parent = 0;
  bool miss = !prefix_caching_;
  for (int i = 0; i < nblocks; ++i) {
    const bool full = (i + 1) * block_size_ <= n;
    const bool last = i == nblocks - 1;
    if (!miss && full && !(last && (i + 1) * block_size_ == n)) {
      const uint64_t h = chain_hash(parent, seq.tokens.data() + i * block_size_, block_size_);
      const int b = find_cached(h, parent, seq.tokens.data() + i * block_size_);
      if (b >= 0) {
        from_free += blocks_[b].ref_count == 0;
        parent = h;
        continue;
      }
    }
    miss = true;
    ++from_free;
  }
  return from_free <= num_free_blocks();
}

void BlockManager::allocate(Sequence& seq) {
  if (!seq.block_table.empty()) throw Error("BlockManager: sequence " + std::to_string(seq.id) + " already has blocks");
  if (!can_allocate(seq)) throw Error("BlockManager: not enough free blocks for sequence " + std::to_string(seq.id));
  const int n = seq.num_tokens();
  const int nblocks = blocks_for(n);
  uint64_t parent = 0;
  int cached_tokens = 0;
  bool miss = !prefix_caching_;
  for (int i = 0; i < nblocks; ++i) {
    const int32_t* toks = seq.tokens.data() + i * block_size_;
    const bool full = (i + 1) * block_size_ <= n;
    const bool last = i == nblocks - 1;
    // The last block is never taken from the cache when it would leave no token to compute.
    if (!miss && full && !(last && (i + 1) * block_size_ == n)) {
      const uint64_t h = chain_hash(parent, toks, block_size_);
      const int b = find_cached(h, parent, toks);
      if (b >= 0) {
        ref(b);
        seq.block_table.push_back(b);
        cached_tokens += block_size_;
        parent = h;
        ++hits_;
        continue;
      }
    }
    miss = true;
    if (full) ++misses_;
    seq.block_table.push_back(take_free_block());
  }
  seq.num_computed_tokens = cached_tokens;
  if (seq.num_preemptions == 0 && seq.num_output_tokens() == 0) seq.num_cached_tokens = cached_tokens;
}

void BlockManager::deallocate(Sequence& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) unref(*it);
  seq.block_table.clear();
  seq.num_computed_tokens = 0;
}

bool BlockManager::can_append(const Sequence& seq, int num_tokens) const {
  return blocks_for(num_tokens) - static_cast<int>(seq.block_table.size()) <= num_free_blocks();
}

void BlockManager::append(Sequence& seq, int num_tokens) {
  if (!can_append(seq, num_tokens)) throw Error("BlockManager: cannot grow sequence " + std::to_string(seq.id));
  while (static_cast<int>(seq.block_table.size()) < blocks_for(num_tokens))
    seq.block_table.push_back(take_free_block());
}

void BlockManager::commit(const Sequence& seq) {
  if (!prefix_caching_) return;
  const int full_computed = std::min(seq.num_computed_tokens, seq.num_tokens()) / block_size_;
  uint64_t parent = 0;
  for (int i = 0; i < full_computed && i < static_cast<int>(seq.block_table.size()); ++i) {
    Block& b = blocks_[seq.block_table[i]];
    if (b.tokens.size() == static_cast<size_t>(block_size_)) {  // hashed before (or a hit)
      parent = b.hash;
      continue;
    }
    const int32_t* toks = seq.tokens.data() + i * block_size_;
    b.tokens.assign(toks, toks + block_size_);
    b.parent_hash = parent;
    b.hash = chain_hash(parent, toks, block_size_);
    parent = b.hash;
    // Two sequences can compute the same prefix at once; the first to finish is the cached one.
    if (hash_to_block_.emplace(b.hash, seq.block_table[i]).second) b.cached = true;
  }
}

void BlockManager::check_invariants(const std::vector<const Sequence*>& live) const {
  std::vector<int> refs(blocks_.size(), 0);
  for (const Sequence* s : live)
    for (int b : s->block_table) {
      if (b < 0 || b >= num_blocks()) throw Error("invariant: sequence holds block " + std::to_string(b));
      ++refs[b];
    }
  size_t zero = 0;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (refs[b] != blocks_[b].ref_count)
      throw Error("invariant: block " + std::to_string(b) + " has ref_count " + std::to_string(blocks_[b].ref_count) +
                  " but " + std::to_string(refs[b]) + " holders");
    zero += refs[b] == 0;
  }
  if (zero != free_.size()) throw Error("invariant: free list has " + std::to_string(free_.size()) +
                                        " blocks, " + std::to_string(zero) + " are unreferenced");
  std::vector<char> seen(blocks_.size(), 0);
  for (int b : free_) {
    if (seen[b]++ || blocks_[b].ref_count != 0) throw Error("invariant: free list corrupt at block " + std::to_string(b));
  }
  for (const auto& [h, b] : hash_to_block_)
    if (!blocks_[b].cached || blocks_[b].hash != h) throw Error("invariant: hash map entry for block " + std::to_string(b));
}

}  // namespace nanovllm
