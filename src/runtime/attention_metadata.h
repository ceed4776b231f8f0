// What attention needs to know about one step's batch, passed down explicitly from the model
// runner (no globals). Tokens of all sequences are packed along one dimension; sequence s owns
// query rows [cu_seqlens_q[s], cu_seqlens_q[s+1]). Its keys are the first context_lens[s]
// slots of the sequence's blocks (cached prefix + this step's tokens), read through the block
// table. The tensors live in the backend's memory, so a CUDA backend keeps them in
// fixed-capacity device buffers that CUDA graphs replay with stable pointers.
#pragma once

#include "runtime/tensor.h"

namespace nanovllm {

struct AttentionMetadata {
  int num_seqs = 0;
  int block_size = 0;      // tokens per KV-cache block
  int max_seqlen_q = 0;    // the longest query run in the batch
  int max_context_len = 0;
  Tensor positions;        // (num_tokens,) int32: each token's position in its sequence
  Tensor slot_mapping;     // (num_tokens,) int32: cache slot (block * block_size + offset) to
                           //   write each token's K/V to; -1 skips the write
  Tensor cu_seqlens_q;     // (num_seqs + 1,) int32: prefix sums of query lengths
  Tensor context_lens;     // (num_seqs,) int32: keys visible to the sequence's last query
  Tensor block_tables;     // (num_seqs, max_blocks_per_seq) int32: -1 past the end
};

}  // namespace nanovllm
