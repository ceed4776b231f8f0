// Read-bandwidth probes for the decode attention's roofline (informational, test_cuda_attention_perf.cpp):
// how fast the card streams bytes that are only read, contiguously and in the decode kernel's own
// access pattern with no arithmetic. Against the kernel's time on the same cache they split its
// gap to the copy rate into "the pattern" and "the work around it".
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanovllm::testing {

// Reads n16 16-byte words at p once (streaming, evict-first), each thread 8 loads in flight.
void read_stream(const void* p, int64_t n16, unsigned* sink, cudaStream_t stream);

// The decode kernel's loads without its arithmetic: grid (splits, nkv, sequences) of 128
// threads; a CTA reads `unit` keys of one KV head (d = 128) in 8-key warp tiles through a
// per-warp cp.async ring of `stages` stages of 4 KB (2, 4, 6 or 8), block table as the kernel's.
// head_major: the same reads with the cache laid out (blocks, nkv, block_size, D), each head's
// block contiguous, instead of the engine's (blocks, block_size, nkv, D).
void read_kv_pattern(const void* k_cache, const void* v_cache, int nkv, int block_size, int num_seqs,
                     const int32_t* context_lens, const int32_t* block_tables, int max_blocks, int max_context_len,
                     int unit, int stages, bool head_major, unsigned* sink, cudaStream_t stream);

}  // namespace nanovllm::testing
