#include "engine/prompt_logits.h"

#include <algorithm>

#include "runtime/error.h"

namespace nanovllm {
namespace {
Tensor upload_i32(Backend& b, const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  Tensor t = b.empty(shape, DType::I32);
  b.copy_from_host(t, v.data(), v.size() * sizeof(int32_t));
  return t;
}
}  // namespace

PromptLogits prompt_logits(CausalLM& model, Backend& b,
                           const std::vector<std::vector<int32_t>>& prompts, int block_size) {
  const ModelConfig& c = model.config();
  if (prompts.empty()) throw Error("prompt_logits: no prompts");
  if (block_size <= 0) throw Error("prompt_logits: block_size must be positive");
  std::vector<int32_t> ids, positions, slots, cu{0}, ctx;
  int max_blocks = 0, max_len = 0, next_block = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const auto& p = prompts[s];
    if (p.empty()) throw Error("prompt " + std::to_string(s) + " is empty");
    if (static_cast<int64_t>(p.size()) > usable_positions(c))
      throw Error("prompt " + std::to_string(s) + " has " + std::to_string(p.size()) + " tokens, more than " +
                  (usable_positions(c) < c.max_position_embeddings ? "the sliding window" : "max_position_embeddings") +
                  " (" + std::to_string(usable_positions(c)) + ")");
    for (int32_t id : p)
      if (id < 0 || id >= c.vocab_size)
        throw Error("prompt " + std::to_string(s) + " has token id " + std::to_string(id) +
                    " outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    const int len = static_cast<int>(p.size());
    max_blocks = std::max(max_blocks, (len + block_size - 1) / block_size);
    max_len = std::max(max_len, len);
  }
  // Sequences get consecutive blocks; the block table indirection is still exercised.
  std::vector<int32_t> tables(prompts.size() * max_blocks, -1);
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int len = static_cast<int>(prompts[s].size());
    const int nblocks = (len + block_size - 1) / block_size;
    for (int k = 0; k < nblocks; ++k) tables[s * max_blocks + k] = next_block + k;
    for (int i = 0; i < len; ++i) {
      ids.push_back(prompts[s][i]);
      positions.push_back(i);
      slots.push_back((next_block + i / block_size) * block_size + i % block_size);
    }
    next_block += nblocks;
    cu.push_back(cu.back() + len);
    ctx.push_back(len);
  }
  const int64_t T = static_cast<int64_t>(ids.size());
  KVCache cache;
  cache.block_size = block_size;
  cache.num_blocks = next_block;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    cache.k.push_back(b.empty({next_block, block_size, model.num_kv_heads(), model.head_dim()}, b.compute_dtype()));
    cache.v.push_back(b.empty({next_block, block_size, model.num_kv_heads(), model.head_dim()}, b.compute_dtype()));
  }
  AttentionMetadata meta;
  meta.num_seqs = static_cast<int>(prompts.size());
  meta.block_size = block_size;
  meta.max_seqlen_q = max_len;
  meta.max_context_len = max_len;
  meta.positions = upload_i32(b, positions, {T});
  meta.slot_mapping = upload_i32(b, slots, {T});
  meta.cu_seqlens_q = upload_i32(b, cu, {static_cast<int64_t>(cu.size())});
  meta.context_lens = upload_i32(b, ctx, {static_cast<int64_t>(ctx.size())});
  meta.block_tables = upload_i32(b, tables, {static_cast<int64_t>(prompts.size()), max_blocks});
  Tensor input = upload_i32(b, ids, {T});

  Tensor hidden = model.forward(input, meta, cache);
  Tensor logits = model.compute_logits(hidden);
  std::vector<float> all(static_cast<size_t>(logits.numel()));
  if (logits.dtype() == DType::F32) {
    b.copy_to_host(all.data(), logits, all.size() * sizeof(float));
  } else if (logits.dtype() == DType::BF16) {  // a GPU's logits: widened exactly
    std::vector<uint16_t> raw(all.size());
    b.copy_to_host(raw.data(), logits, raw.size() * sizeof(uint16_t));
    for (size_t i = 0; i < raw.size(); ++i) all[i] = bf16_to_f32(raw[i]);
  } else {
    throw Error("prompt_logits: the backend returned logits of an unexpected dtype");
  }
  PromptLogits out;
  out.vocab_size = c.vocab_size;
  for (size_t s = 0; s < prompts.size(); ++s)
    out.logits.emplace_back(all.begin() + static_cast<int64_t>(cu[s]) * c.vocab_size,
                            all.begin() + static_cast<int64_t>(cu[s + 1]) * c.vocab_size);
  return out;
}

}  // namespace nanovllm
