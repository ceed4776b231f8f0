#include "engine/model_runner.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/error.h"

namespace nanovllm {
namespace {
std::string gib(double b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", b / double(1 << 30));
  return s;
}

// Where a step's int32 inputs sit in the one step buffer, in elements: each field starts on a
// 64-byte boundary. A function of the step's shape alone (T tokens, S sequences, the table's
// element count), so a decode graph captured at batch B and every step replayed on it, which
// has the same T = S = B and table stride, see the same addresses. One host-to-device copy per
// step instead of six: each small copy cost ~4.6 us of GPU time (H200, NANOVLLM_PROFILE_OPS
// on a batch-1 run: 6 x 4.64 us per step, ~3% of a Qwen3-0.6B token; one copy: 8.65 us).
struct StepLayout {
  int64_t ids, pos, slots, cu, ctx, tables, sampled_row, end;
  StepLayout(int64_t T, int64_t S, int64_t table_elems) {
    int64_t at = 0;
    auto field = [&](int64_t n) {
      const int64_t off = at;
      at = (at + n + 15) / 16 * 16;
      return off;
    };
    ids = field(T);
    pos = field(T);
    slots = field(T);
    cu = field(S + 1);
    ctx = field(S);
    tables = field(table_elems);
    sampled_row = field(T);
    end = at;
  }
};
}  // namespace

int64_t ModelRunner::block_bytes(const ModelConfig& c, int block_size, DType dtype) {
  return int64_t{2} * c.num_hidden_layers * block_size * c.num_key_value_heads * c.head_dim *
         static_cast<int64_t>(dtype_size(dtype));
}

ModelRunner::ModelRunner(CausalLM& model, Backend& backend, const Config& config)
    : model_(model), backend_(backend), config_(config) {
  const ModelConfig& mc = model.config();
  const int bs = config.kvcache_block_size;
  max_seqs_ = config.max_num_seqs;
  max_tokens_ = std::max(config.max_num_batched_tokens, config.max_num_seqs);
  max_blocks_per_seq_ = (config.max_model_len + bs - 1) / bs;
  pad_decodes_ = backend.device() != Device::CPU;
  // "auto" is on with a device; NANOVLLM_ASYNC_SCHEDULING=on/off decides it instead (the test
  // suite runs the CPU engine tests both ways with it).
  const char* forced = std::getenv("NANOVLLM_ASYNC_SCHEDULING");
  const bool auto_on = forced && *forced ? std::string(forced) == "on" : backend.device() != Device::CPU;
  async_ = config.async_scheduling == "on" || (config.async_scheduling == "auto" && auto_on);
  if (pad_decodes_) {  // Nano-vLLM's ladder: 1, 2, 4, 8, then every 16 up to 512
    const int most = std::min(max_seqs_, 512);
    for (int b : {1, 2, 4, 8})
      if (b <= most) graph_sizes_.push_back(b);
    for (int b = 16; b <= most; b += 16) graph_sizes_.push_back(b);
    if (graph_sizes_.empty() || graph_sizes_.back() < most) graph_sizes_.push_back(most);
  }
  backend.reserve({max_tokens_, max_seqs_, config.max_model_len, mc.vocab_size, 20});

  const int64_t T = max_tokens_;
  // Every field's offset grows with T, S and the table size, so the largest step bounds all.
  const StepLayout most(T, max_seqs_, int64_t{max_seqs_} * max_blocks_per_seq_);
  step_buf_ = backend.empty({most.end}, DType::I32);
  rows_buf_ = backend.empty({T}, DType::I32);

  int num_blocks = config.num_kvcache_blocks;
  if (num_blocks <= 0) {
    if (backend.device_memory()) {
      num_blocks = size_cache_from_memory();
    } else {
      const int64_t per_block = block_bytes(mc, bs, backend.compute_dtype());
      num_blocks = static_cast<int>(std::min<int64_t>(config.cpu_kvcache_bytes / per_block, 1 << 20));
      if (num_blocks <= 0)
        throw Error("cpu_kvcache_bytes (" + std::to_string(config.cpu_kvcache_bytes) +
                    ") is smaller than one KV-cache block (" + std::to_string(per_block) + " bytes)");
    }
  } else if (backend.device_memory()) {
    size_cache_from_memory();  // still profiles, to size the step arena
  }
  allocate_cache(num_blocks);
  if (!config.enforce_eager && pad_decodes_) capture_graphs();
}

void ModelRunner::allocate_cache(int num_blocks) {
  cache_ = KVCache{};
  cache_.block_size = config_.kvcache_block_size;
  cache_.num_blocks = num_blocks;
  const ModelConfig& c = model_.config();
  const std::vector<int64_t> shape{num_blocks, cache_.block_size, model_.num_kv_heads(), model_.head_dim()};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    cache_.k.push_back(backend_.empty(shape, backend_.compute_dtype()));
    cache_.v.push_back(backend_.empty(shape, backend_.compute_dtype()));
  }
}

// Runs the largest prefill step (max_num_batched_tokens tokens, as many sampling rows as
// max_num_seqs allows) and the largest decode step with step memory measured, against a
// one-block cache that no row reads (block tables of -1, no slots): the peak is the step
// arena's size. The KV cache then gets what gpu_memory_utilization leaves.
int ModelRunner::size_cache_from_memory() {
  allocate_cache(1);
  backend_.begin_profile();
  {
    // No step holds more than max_num_seqs sequences of at most max_model_len tokens each, so a
    // small max_num_seqs (batch-1 serving) also caps the largest prefill step.
    const int T = static_cast<int>(std::min<int64_t>(max_tokens_, int64_t{max_seqs_} * config_.max_model_len));
    const int nseq = std::max({std::min(max_seqs_, T), (T + config_.max_model_len - 1) / config_.max_model_len, 1});
    HostBatch b = padding_batch(0, max_blocks_per_seq_);
    b.cu = {0};
    b.num_seqs = nseq;
    for (int s = 0; s < nseq; ++s) {
      const int len = T / nseq + (s < T % nseq ? 1 : 0);
      for (int i = 0; i < len; ++i) {
        b.ids.push_back(0);
        b.positions.push_back(i);
        b.slots.push_back(-1);
        b.sampled_row.push_back(-1);
      }
      b.cu.push_back(b.cu.back() + len);
      b.ctx.push_back(len);
      b.sample_rows.push_back(b.cu.back() - 1);
      b.max_q = std::max(b.max_q, len);
      b.max_ctx = std::max(b.max_ctx, len);
    }
    b.tables.assign(size_t(nseq) * max_blocks_per_seq_, -1);
    backend_.begin_step();
    AttentionMetadata meta;
    const StepInputs in = upload(b, meta, false);
    logits_of(in, false, meta, b, cache_);
    backend_.end_step();
  }
  if (!graph_sizes_.empty()) {  // the largest decode step, with the decode kernel's workspace
    HostBatch b = padding_batch(graph_sizes_.back(), max_blocks_per_seq_);
    backend_.begin_step(true);
    AttentionMetadata meta;
    const StepInputs in = upload(b, meta, true);
    logits_of(in, async_, meta, b, cache_);
    backend_.end_step();
  }
  const size_t peak = backend_.end_profile();
  step_memory_ = peak + (size_t{4} << 20);
  backend_.set_step_memory(step_memory_);
  cache_ = KVCache{};  // frees the one-block cache

  const auto [free_b, total_b] = *backend_.device_memory();
  const double used = double(total_b - free_b);
  const double budget = double(total_b) * config_.gpu_memory_utilization - used;
  const int64_t per_block = block_bytes(model_.config(), config_.kvcache_block_size, backend_.compute_dtype());
  const int64_t blocks = budget > 0 ? static_cast<int64_t>(budget / double(per_block)) : 0;
  if (blocks < 1)
    throw Error("not enough GPU memory for the KV cache: " + gib(double(total_b)) + " x gpu_memory_utilization " +
                std::to_string(config_.gpu_memory_utilization) + " leaves " + gib(budget) + " after " + gib(used) +
                " in use (weights, and " + gib(double(step_memory_)) +
                " for the largest step); one block needs " + gib(double(per_block)) +
                ". Raise gpu_memory_utilization or lower max_num_batched_tokens / max_num_seqs");
  return static_cast<int>(std::min<int64_t>(blocks, 1 << 24));
}

int ModelRunner::pick_graph_size(int n) const {
  for (int b : graph_sizes_)
    if (b >= n) return b;
  return 0;
}

ModelRunner::HostBatch ModelRunner::padding_batch(int rows, int table_stride) {
  HostBatch b;
  b.num_seqs = rows;
  b.table_stride = table_stride;
  b.max_q = rows ? 1 : 0;
  for (int i = 0; i < rows; ++i) {
    b.ids.push_back(0);
    b.positions.push_back(0);
    b.slots.push_back(-1);  // no K/V write
    b.sampled_row.push_back(-1);
    b.cu.push_back(i + 1);
    b.ctx.push_back(0);     // sees no key: its output is zeros, and nothing is read
    b.sample_rows.push_back(i);
  }
  b.tables.assign(size_t(rows) * table_stride, -1);
  return b;
}

ModelRunner::HostBatch ModelRunner::build(const SchedulerOutput& step, int pad_to) const {
  const int bs = cache_.block_size;
  const int n = static_cast<int>(step.scheduled.size());
  size_t used_blocks = 1;
  for (const auto& s : step.scheduled) used_blocks = std::max(used_blocks, s.seq->block_table.size());
  // A decode batch at a ladder size has the fixed stride the graphs were captured with.
  const int stride = pad_to ? max_blocks_per_seq_ : static_cast<int>(used_blocks);
  HostBatch b = padding_batch(0, stride);
  b.num_seqs = std::max(n, pad_to);
  b.tables.assign(size_t(b.num_seqs) * stride, -1);
  for (int i = 0; i < n; ++i) {
    const Sequence& seq = *step.scheduled[i].seq;
    const int begin = seq.num_computed_tokens, end = begin + step.scheduled[i].num_tokens;
    for (int p = begin; p < end; ++p) {
      // A pending token (async scheduling) is read on the device from the previous sampling.
      const bool pending = seq.pending && p == seq.num_tokens() - 1;
      if (!pending && seq.tokens[p] < 0)
        throw Error("ModelRunner: sequence " + std::to_string(seq.id) + " has no token at position " +
                    std::to_string(p) + " (an unresolved placeholder)");
      b.ids.push_back(pending ? 0 : seq.tokens[p]);
      b.sampled_row.push_back(pending ? seq.pending_row : -1);
      b.any_sampled_row = b.any_sampled_row || pending;
      b.positions.push_back(p);
      b.slots.push_back(seq.block_table[p / bs] * bs + p % bs);
    }
    std::copy(seq.block_table.begin(), seq.block_table.end(), b.tables.begin() + size_t(i) * stride);
    b.cu.push_back(b.cu.back() + (end - begin));
    b.ctx.push_back(end);
    b.max_q = std::max(b.max_q, end - begin);
    b.max_ctx = std::max(b.max_ctx, end);
    if (step.scheduled[i].samples) b.sample_rows.push_back(b.cu.back() - 1);
  }
  for (int i = n; i < pad_to; ++i) {
    b.ids.push_back(0);
    b.sampled_row.push_back(-1);
    b.positions.push_back(0);
    b.slots.push_back(-1);
    b.cu.push_back(b.cu.back() + 1);
    b.ctx.push_back(0);
    b.sample_rows.push_back(i);  // logits for every row, as the graph computes them
  }
  return b;
}

ModelRunner::StepInputs ModelRunner::upload(const HostBatch& b, AttentionMetadata& meta, bool decode_graph_shape) {
  const int64_t T = static_cast<int64_t>(b.ids.size());
  if (T > max_tokens_ || b.num_seqs > std::max(max_seqs_, graph_sizes_.empty() ? 0 : graph_sizes_.back()))
    throw Error("ModelRunner: a step of " + std::to_string(T) + " tokens and " + std::to_string(b.num_seqs) +
                " sequences exceeds the runner's capacity");
  const int64_t S = b.num_seqs;
  const StepLayout at(T, S, static_cast<int64_t>(b.tables.size()));
  if (at.end > step_buf_.numel())
    throw Error("ModelRunner: a step's inputs (" + std::to_string(at.end) + " ints) exceed the step buffer");
  step_host_.assign(static_cast<size_t>(at.end), 0);
  // Copies v into the packed host buffer at `off`; returns its view of the device buffer.
  auto put = [&](int64_t off, const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    std::copy(v.begin(), v.end(), step_host_.begin() + off);
    return step_buf_.rows(off, off + static_cast<int64_t>(v.size())).reshape(std::move(shape));
  };
  meta.num_seqs = b.num_seqs;
  meta.block_size = cache_.block_size;
  meta.max_seqlen_q = b.max_q;
  // Decode steps on a device see the full context capacity: the decode kernel's split of the
  // keys then depends on nothing but the sequence itself (eager and graph runs agree).
  meta.max_context_len = decode_graph_shape ? config_.max_model_len : b.max_ctx;
  meta.positions = put(at.pos, b.positions, {T});
  meta.slot_mapping = put(at.slots, b.slots, {T});
  meta.cu_seqlens_q = put(at.cu, b.cu, {S + 1});
  meta.context_lens = put(at.ctx, b.ctx, {S});
  meta.block_tables = put(at.tables, b.tables, {S, static_cast<int64_t>(b.table_stride)});
  StepInputs in{put(at.ids, b.ids, {T}), put(at.sampled_row, b.sampled_row, {T})};
  Tensor all = step_buf_.rows(0, at.end);
  backend_.copy_from_host(all, step_host_.data(), step_host_.size() * sizeof(int32_t));
  return in;
}

// Hidden states, then logits for the sampling rows only (every row, in a decode batch).
Tensor ModelRunner::logits_of(const StepInputs& in, bool fill_pending, const AttentionMetadata& meta,
                             const HostBatch& b, KVCache& cache) {
  Tensor ids = in.ids;
  if (fill_pending) backend_.fill_sampled_ids(ids, in.sampled_row, backend_.sampled_tokens());
  Tensor hidden = model_.forward(ids, meta, cache);
  const int64_t R = static_cast<int64_t>(b.sample_rows.size());
  if (R == hidden.dim(0)) return model_.compute_logits(hidden);
  Tensor rows = rows_buf_.rows(0, R);
  backend_.copy_from_host(rows, b.sample_rows.data(), R * sizeof(int32_t));
  Tensor picked = backend_.empty({R, hidden.dim(1)}, hidden.dtype());
  backend_.gather_rows(hidden, rows, picked);
  return model_.compute_logits(picked);
}

void ModelRunner::capture_graphs() {
  for (auto it = graph_sizes_.rbegin(); it != graph_sizes_.rend(); ++it) {
    const int B = *it;
    const HostBatch b = padding_batch(B, max_blocks_per_seq_);
    AttentionMetadata meta;
    backend_.begin_step(true);
    const StepInputs in = upload(b, meta, true);
    logits_of(in, async_, meta, b, cache_);  // warm-up: every GEMM plan and lazy setup happens here
    backend_.end_step();
    backend_.begin_step(true);
    Tensor logits;
    // With async scheduling, every replay first reads its pending ids from the sampler's output.
    std::unique_ptr<StepGraph> g = backend_.capture([&] { logits = logits_of(in, async_, meta, b, cache_); });
    backend_.end_step();
    if (!g) {  // the backend has no graphs
      graphs_.clear();
      break;
    }
    graphs_[B] = Graph{std::move(g), logits};
  }
  backend_.synchronize();
}

void ModelRunner::launch(const SchedulerOutput& step, const SamplingBatch& batch) {
  if (uncollected_.size() >= 2) throw Error("ModelRunner: a third step launched before the first was collected");
  const int n = static_cast<int>(step.scheduled.size());
  bool decode = pad_decodes_ && n > 0;
  for (const auto& s : step.scheduled) decode = decode && s.num_tokens == 1 && s.samples;
  const int pad_to = decode ? pick_graph_size(n) : 0;
  const HostBatch b = build(step, pad_to);
  size_t sampling = 0;
  for (const auto& s : step.scheduled) sampling += s.samples ? 1 : 0;
  if (sampling != batch.size())
    throw Error("ModelRunner: " + std::to_string(sampling) + " sequences sample but the batch has " +
                std::to_string(batch.size()) + " rows");
  backend_.begin_step(pad_to > 0);
  struct EndStep {  // the step closes even when an op throws
    Backend& b;
    ~EndStep() { b.end_step(); }
  } end_step{backend_};
  AttentionMetadata meta;
  const StepInputs in = upload(b, meta, pad_to > 0);
  Tensor logits;
  auto g = pad_to ? graphs_.find(pad_to) : graphs_.end();
  if (g != graphs_.end()) {
    g->second.graph->replay();  // fills the pending ids itself when async_
    logits = g->second.logits;
  } else {
    logits = logits_of(in, b.any_sampled_row, meta, b, cache_);
  }
  if (batch.size() == 0) {
    uncollected_.push_back(false);
    return;
  }
  if (logits.dim(0) != static_cast<int64_t>(batch.size())) logits = logits.rows(0, static_cast<int64_t>(batch.size()));
  backend_.sample_async(logits, batch);
  uncollected_.push_back(true);
}

SamplerOutput ModelRunner::collect() {
  if (uncollected_.empty()) throw Error("ModelRunner: collect() without a launched step");
  const bool sampled = uncollected_.front();
  uncollected_.pop_front();
  return sampled ? backend_.collect_sample() : SamplerOutput{};
}

}  // namespace nanovllm
