#include "engine/model_runner.h"

#include <algorithm>

#include "runtime/error.h"

namespace nanovllm {

ModelRunner::ModelRunner(CausalLM& model, Backend& backend, int num_blocks, int block_size)
    : model_(model), backend_(backend) {
  cache_.block_size = block_size;
  cache_.num_blocks = num_blocks;
  const ModelConfig& c = model.config();
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    cache_.k.push_back(backend.empty({num_blocks, block_size, model.num_kv_heads(), model.head_dim()},
                                     backend.compute_dtype()));
    cache_.v.push_back(backend.empty({num_blocks, block_size, model.num_kv_heads(), model.head_dim()},
                                     backend.compute_dtype()));
  }
}

int64_t ModelRunner::block_bytes(const ModelConfig& c, int block_size, DType dtype) {
  return int64_t{2} * c.num_hidden_layers * block_size * c.num_key_value_heads * c.head_dim *
         static_cast<int64_t>(dtype_size(dtype));
}

Tensor ModelRunner::upload(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  Tensor t = backend_.empty(shape, DType::I32);
  backend_.copy_from_host(t, v.data(), v.size() * sizeof(int32_t));
  return t;
}

SamplerOutput ModelRunner::run(const SchedulerOutput& step, const SamplingBatch& batch) {
  const int bs = cache_.block_size;
  std::vector<int32_t> ids, positions, slots, cu{0}, ctx, sample_rows;
  size_t max_blocks = 1;
  int max_q = 0, max_ctx = 0;
  for (const auto& s : step.scheduled) max_blocks = std::max(max_blocks, s.seq->block_table.size());
  std::vector<int32_t> tables(step.scheduled.size() * max_blocks, -1);
  for (size_t i = 0; i < step.scheduled.size(); ++i) {
    const Sequence& seq = *step.scheduled[i].seq;
    const int begin = seq.num_computed_tokens, end = begin + step.scheduled[i].num_tokens;
    for (int p = begin; p < end; ++p) {
      ids.push_back(seq.tokens[p]);
      positions.push_back(p);
      slots.push_back(seq.block_table[p / bs] * bs + p % bs);
    }
    std::copy(seq.block_table.begin(), seq.block_table.end(), tables.begin() + i * max_blocks);
    cu.push_back(cu.back() + (end - begin));
    ctx.push_back(end);
    max_q = std::max(max_q, end - begin);
    max_ctx = std::max(max_ctx, end);
    if (step.scheduled[i].samples) sample_rows.push_back(cu.back() - 1);
  }
  if (sample_rows.size() != batch.size())
    throw Error("ModelRunner: " + std::to_string(sample_rows.size()) + " sequences sample but the batch has " +
                std::to_string(batch.size()) + " rows");
  const int64_t T = static_cast<int64_t>(ids.size());
  AttentionMetadata meta;
  meta.num_seqs = static_cast<int>(step.scheduled.size());
  meta.block_size = bs;
  meta.max_seqlen_q = max_q;
  meta.max_context_len = max_ctx;
  meta.positions = upload(positions, {T});
  meta.slot_mapping = upload(slots, {T});
  meta.cu_seqlens_q = upload(cu, {static_cast<int64_t>(cu.size())});
  meta.context_lens = upload(ctx, {static_cast<int64_t>(ctx.size())});
  meta.block_tables = upload(tables, {static_cast<int64_t>(step.scheduled.size()), static_cast<int64_t>(max_blocks)});
  Tensor hidden = model_.forward(upload(ids, {T}), meta, cache_);
  if (sample_rows.empty()) return {};
  // Logits only where a token is sampled: the lm_head is the largest GEMM of a decode step.
  Tensor picked = backend_.empty({static_cast<int64_t>(sample_rows.size()), hidden.dim(1)}, hidden.dtype());
  backend_.gather_rows(hidden, upload(sample_rows, {static_cast<int64_t>(sample_rows.size())}), picked);
  Tensor logits = model_.compute_logits(picked);
  return backend_.sample(logits, batch);
}

}  // namespace nanovllm
