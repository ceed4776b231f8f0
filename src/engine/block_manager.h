// The paged KV cache's bookkeeping: which blocks each sequence holds, reference counts for
// blocks shared through the prefix cache, and least-recently-used reuse of free blocks.
//
// Prefix-cache rules (docs/engine.md has the full contract):
// - Only a full block whose K/V has been computed is cached. Its hash chains on the previous
//   block's hash plus its own token ids (xxHash3-64), so a hash names a whole prefix.
// - A hit is confirmed against the block's stored token ids and parent hash.
// - A freed block keeps its contents and hash until it is reused: it can still be hit. Free
//   blocks are reused least recently freed first; a sequence's blocks are freed last-first, so
//   a prefix's first blocks outlive its tails.
// - At least one prompt token is always computed (its logits start the output), so a prompt
//   whose every block is cached recomputes its last block into a fresh block.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "engine/sequence.h"

namespace nanovllm {

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool enable_prefix_caching);

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int num_free_blocks() const { return static_cast<int>(free_.size()); }
  int blocks_for(int num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // Whether every block of the sequence's current tokens can be had now (counting hits).
  bool can_allocate(const Sequence& seq) const;
  // Gives the sequence blocks for all its tokens, reusing cached prefix blocks; sets
  // num_computed_tokens (and num_cached_tokens on first admission) to the tokens found cached.
  void allocate(Sequence& seq);
  // Returns all the sequence's blocks; cached contents stay findable until reused.
  void deallocate(Sequence& seq);
  // Whether the sequence can grow to `num_tokens` tokens (a new block when it crosses one).
  bool can_append(const Sequence& seq, int num_tokens) const;
  void append(Sequence& seq, int num_tokens);
  // After a step: makes the sequence's newly completed, computed blocks findable.
  void commit(const Sequence& seq);

  uint64_t hits() const { return hits_; }      // prompt blocks found in the cache
  uint64_t misses() const { return misses_; }  // prompt blocks computed afresh
  int ref_count(int block) const { return blocks_[block].ref_count; }
  // Checks every internal invariant (reference counts, free list, hash map); throws on error.
  void check_invariants(const std::vector<const Sequence*>& live) const;

 private:
  struct Block {
    int ref_count = 0;
    uint64_t hash = 0;         // valid when cached
    uint64_t parent_hash = 0;
    bool cached = false;       // findable through hash_to_block_
    std::vector<int32_t> tokens;
    std::list<int>::iterator free_pos;  // position in free_ when ref_count == 0
  };
  static uint64_t chain_hash(uint64_t parent, const int32_t* tokens, int n);
  // A cached block holding exactly these tokens after `parent`, or -1.
  int find_cached(uint64_t hash, uint64_t parent, const int32_t* tokens) const;
  int take_free_block();  // least recently freed; forgets its cached identity
  void ref(int block);
  void unref(int block);

  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::list<int> free_;  // front = least recently freed
  std::unordered_map<uint64_t, int> hash_to_block_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace nanovllm
