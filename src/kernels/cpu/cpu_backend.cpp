// The CPU backend: float32 tensors in host memory, ops from kernels/cpu. Each op checks its
// preconditions (devices, dtypes, shapes) so that a wiring mistake is an Error, not a wrong
// answer.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/backend.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string("cpu backend: ") + op + ": " + what);
}
void expect_f32(const Tensor& t, const char* op, const char* name) {
  expect(t.device() == Device::CPU && t.dtype() == DType::F32, op,
         std::string(name) + " must be a float32 CPU tensor");
}
void expect_i32(const Tensor& t, const char* op, const char* name) {
  expect(t.device() == Device::CPU && t.dtype() == DType::I32, op,
         std::string(name) + " must be an int32 CPU tensor");
}

// The most bytes this backend's live tensors may hold: NANOVLLM_CPU_MEMORY_MB when set, else
// what /proc/meminfo calls MemAvailable when the backend is made; 0: no limit known. Linux
// grants allocations it cannot back (overcommit) and kills the process when their pages are
// touched, so a model too large for the machine is refused here, by name, before its weights
// are written.
size_t cpu_memory_budget() {
  if (const char* v = std::getenv("NANOVLLM_CPU_MEMORY_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(v, &end, 10);  // (it would wrap a leading '-')
    if (!(*v >= '0' && *v <= '9') || *end != '\0' || mb == 0 || mb > (1ull << 40))
      throw Error(std::string("NANOVLLM_CPU_MEMORY_MB must be a positive whole number of MiB, got '") + v + "'");
    return static_cast<size_t>(mb) << 20;
  }
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    unsigned long long kb = 0;
    if (fields >> kb) return static_cast<size_t>(kb) << 10;
  }
  return 0;
}

std::string human_bytes(size_t bytes) {
  std::ostringstream o;
  o.precision(3);
  if (bytes >= (size_t{1} << 30)) o << static_cast<double>(bytes) / (1ull << 30) << " GiB";
  else o << static_cast<double>(bytes) / (1ull << 20) << " MiB";
  return o.str();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() : budget_(cpu_memory_budget()), live_(std::make_shared<std::atomic<size_t>>(0)) {}
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  DType compute_dtype() const override { return DType::F32; }

  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override {
    const size_t bytes = checked_nbytes(shape, dtype, "cpu backend");
    // 64-byte alignment: whole cache lines per row start, and aligned vector loads.
    const size_t rounded = (bytes + 63) / 64 * 64;
    // Reserve, then check: the count and the check cannot interleave with another allocation.
    const size_t live = live_->fetch_add(rounded) + rounded;
    void* p = nullptr;
    if (!(budget_ && live > budget_) && rounded) p = std::aligned_alloc(64, rounded);
    if (rounded && !p) {
      live_->fetch_sub(rounded);
      if (budget_ && live > budget_)
        throw Error("cpu backend: out of memory: " + std::to_string(bytes) + " more bytes would bring its tensors to " +
                    human_bytes(live) + ", over the " + human_bytes(budget_) +
                    " available (MemAvailable when the backend started, or NANOVLLM_CPU_MEMORY_MB)");
      throw Error("cpu backend: out of memory allocating " + std::to_string(bytes) + " bytes");
    }
    // The count outlives the backend: tensors may.
    return Tensor(dtype, shape, Device::CPU,
                  std::shared_ptr<void>(p, [live = live_, rounded](void* q) {
                    std::free(q);
                    live->fetch_sub(rounded);
                  }),
                  p);
  }

  void copy_from_host(Tensor& dst, const void* src, size_t nbytes) override {
    expect(nbytes <= dst.nbytes(), "copy_from_host", "source larger than destination");
    if (nbytes) std::memcpy(dst.data(), src, nbytes);
  }
  void copy_to_host(void* dst, const Tensor& src, size_t nbytes) override {
    expect(nbytes <= src.nbytes(), "copy_to_host", "destination larger than source");
    if (nbytes) std::memcpy(dst, src.data(), nbytes);
  }

  void load_rows(Tensor& dst, int64_t row_offset, const TensorView& src) override {
    expect_f32(dst, "load_rows", "dst");
    const int64_t rows = src.shape.empty() ? 1 : src.shape[0];
    const int64_t dst_rows = dst.rank() == 0 ? 1 : dst.dim(0);
    const int64_t row_elems = dst_rows ? dst.numel() / dst_rows : 0;
    expect(row_offset >= 0 && row_offset + rows <= dst_rows && src.numel() == rows * row_elems,
           "load_rows", "source " + shape_string(src.shape) + " does not fit rows [" +
                            std::to_string(row_offset) + ", ...) of " + shape_string(dst.shape()));
    float* out = dst.data_as<float>() + row_offset * row_elems;
    const size_t n = static_cast<size_t>(src.numel());
    // Convert in chunks on both cores: loading is a pass over every weight byte.
    const size_t chunk = 1 << 16;
    const size_t esz = dtype_size(src.dtype);
#pragma omp parallel for schedule(static) if (n > static_cast<size_t>(cpu::kParallelMinWork))
    for (size_t c = 0; c < (n + chunk - 1) / chunk; ++c) {
      const size_t b = c * chunk, len = std::min(chunk, n - b);
      convert_to_f32(src.dtype, src.data + b * esz, out + b, len);
    }
  }

  void synchronize() override {}

  void embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    expect_i32(ids, "embedding", "ids");
    expect_f32(table, "embedding", "table");
    expect_f32(out, "embedding", "out");
    expect(table.rank() == 2 && out.rank() == 2 && out.dim(0) == ids.numel() &&
               out.dim(1) == table.dim(1), "embedding", "shape mismatch");
    cpu::embedding(ids.data_as<int32_t>(), table.data_as<float>(), out.data_as<float>(),
                   ids.numel(), table.dim(0), table.dim(1));
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    expect_f32(x, "rms_norm", "x");
    expect(x.shape() == out.shape() && w.numel() == x.dim(-1), "rms_norm", "shape mismatch");
    cpu::rms_norm(x.data_as<float>(), w.data_as<float>(), eps, out.data_as<float>(),
                  x.numel() / x.dim(-1), x.dim(-1));
  }

  void add_rms_norm(Tensor& x, Tensor& residual, const Tensor& w, float eps) override {
    expect_f32(x, "add_rms_norm", "x");
    expect(x.shape() == residual.shape() && w.numel() == x.dim(-1), "add_rms_norm",
           "shape mismatch");
    cpu::add_rms_norm(x.data_as<float>(), residual.data_as<float>(), w.data_as<float>(), eps,
                      x.numel() / x.dim(-1), x.dim(-1));
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    expect_f32(x, "linear", "x");
    expect_f32(w, "linear", "weight");
    expect_f32(out, "linear", "out");
    expect(x.rank() == 2 && w.rank() == 2 && out.rank() == 2 && x.dim(1) == w.dim(1) &&
               out.dim(0) == x.dim(0) && out.dim(1) == w.dim(0) &&
               (!bias || bias->numel() == w.dim(0)),
           "linear", "x " + shape_string(x.shape()) + ", weight " + shape_string(w.shape()) +
                         ", out " + shape_string(out.shape()));
    cpu::linear(x.data_as<float>(), w.data_as<float>(), bias ? bias->data_as<float>() : nullptr,
                out.data_as<float>(), x.dim(0), w.dim(0), w.dim(1));
  }

  // The fused ops as the reference computes them: the ops they stand for, in order.
  void rms_norm_linear(const Tensor& x, const Tensor& norm_w, float eps, const Tensor& w, const Tensor* bias,
                       Tensor& out) override {
    Tensor normed = empty(x.shape(), DType::F32);
    rms_norm(x, norm_w, eps, normed);
    linear(normed, w, bias, out);
  }

  void rms_norm_linear_silu(const Tensor& x, const Tensor& norm_w, float eps, const Tensor& w, Tensor& out,
                            Tensor& scratch) override {
    Tensor normed = empty(x.shape(), DType::F32);
    rms_norm(x, norm_w, eps, normed);
    linear(normed, w, nullptr, scratch);
    silu_and_mul(scratch, out);
  }

  void linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& residual,
                  Tensor& scratch) override {
    expect_f32(residual, "linear_add", "residual");
    expect(residual.shape() == scratch.shape(), "linear_add", "residual and scratch shapes differ");
    linear(x, w, bias, scratch);
    float* r = residual.data_as<float>();
    const float* y = scratch.data_as<float>();
    for (int64_t i = 0, n = residual.numel(); i < n; ++i) r[i] += y[i];
  }

  void qk_norm_rope(Tensor& qkv, int nh, int nkv, int d, const Tensor* q_w, const Tensor* k_w,
                    float eps, const Tensor& cos_sin, const Tensor& positions) override {
    expect_f32(qkv, "qk_norm_rope", "qkv");
    expect_i32(positions, "qk_norm_rope", "positions");
    expect(qkv.rank() == 2 && qkv.dim(1) == static_cast<int64_t>(nh + 2 * nkv) * d &&
               positions.numel() == qkv.dim(0) && cos_sin.rank() == 2 && cos_sin.dim(1) == d &&
               d % 2 == 0 && (!q_w || q_w->numel() == d) && (!k_w || k_w->numel() == d),
           "qk_norm_rope", "shape mismatch");
    cpu::qk_norm_rope(qkv.data_as<float>(), qkv.dim(0), nh, nkv, d,
                      q_w ? q_w->data_as<float>() : nullptr, k_w ? k_w->data_as<float>() : nullptr,
                      eps, cos_sin.data_as<float>(), cos_sin.dim(0), positions.data_as<int32_t>());
  }

  void silu_and_mul(const Tensor& gate_up, Tensor& out) override {
    expect_f32(gate_up, "silu_and_mul", "gate_up");
    expect(gate_up.rank() == 2 && out.rank() == 2 && gate_up.dim(1) == 2 * out.dim(1) &&
               gate_up.dim(0) == out.dim(0), "silu_and_mul", "shape mismatch");
    cpu::silu_and_mul(gate_up.data_as<float>(), out.data_as<float>(), out.dim(0), out.dim(1));
  }

  void store_kv(const Tensor& qkv, int nh, int nkv, int d, Tensor& k_cache, Tensor& v_cache,
                const AttentionMetadata& meta) override {
    expect_f32(qkv, "store_kv", "qkv");
    expect_f32(k_cache, "store_kv", "k_cache");
    expect(k_cache.shape() == v_cache.shape() && k_cache.rank() == 4 && k_cache.dim(2) == nkv &&
               k_cache.dim(3) == d && meta.slot_mapping.numel() == qkv.dim(0),
           "store_kv", "shape mismatch");
    cpu::store_kv(qkv.data_as<float>(), qkv.dim(0), nh, nkv, d, k_cache.data_as<float>(),
                  v_cache.data_as<float>(), k_cache.dim(0) * k_cache.dim(1),
                  meta.slot_mapping.data_as<int32_t>());
  }

  void attention(const Tensor& qkv, int nh, int nkv, int d, float scale, const Tensor& k_cache,
                 const Tensor& v_cache, const AttentionMetadata& meta, Tensor& out) override {
    expect_f32(qkv, "attention", "qkv");
    expect_f32(out, "attention", "out");
    expect(nkv > 0 && nh % nkv == 0, "attention", "query heads not a multiple of kv heads");
    expect(out.rank() == 2 && out.dim(0) == qkv.dim(0) && out.dim(1) == static_cast<int64_t>(nh) * d &&
               k_cache.rank() == 4 && k_cache.dim(1) == meta.block_size &&
               meta.block_tables.rank() == 2 && meta.block_tables.dim(0) == meta.num_seqs &&
               meta.cu_seqlens_q.numel() == meta.num_seqs + 1 &&
               meta.context_lens.numel() == meta.num_seqs,
           "attention", "shape mismatch");
    cpu::paged_attention(qkv.data_as<float>(), nh, nkv, d, scale, k_cache.data_as<float>(),
                         v_cache.data_as<float>(), meta.block_size, k_cache.dim(0), meta.num_seqs,
                         meta.cu_seqlens_q.data_as<int32_t>(), meta.context_lens.data_as<int32_t>(),
                         meta.block_tables.data_as<int32_t>(),
                         static_cast<int>(meta.block_tables.dim(1)), out.data_as<float>());
  }

  std::string moe_unsupported(int, int, int64_t, int64_t) const override { return ""; }  // any shape
  void moe_mlp(const Tensor& x, const Tensor& router, const Tensor& gate_up, const Tensor& down, int k,
               bool renormalize, Tensor& out) override {
    for (const auto& [t, what] : {std::pair{&x, "x"}, {&router, "router"}, {&gate_up, "gate_up"}, {&down, "down"},
                                  {static_cast<const Tensor*>(&out), "out"}})
      expect_f32(*t, "moe_mlp", what);
    const int64_t T = x.dim(0), H = x.dim(1), E = router.dim(0);
    const int64_t I = E > 0 ? gate_up.dim(0) / (2 * E) : 0;
    expect(x.rank() == 2 && router.rank() == 2 && router.dim(1) == H && gate_up.rank() == 2 &&
               gate_up.dim(0) == E * 2 * I && gate_up.dim(1) == H && I > 0 && down.rank() == 2 &&
               down.dim(0) == E * H && down.dim(1) == I && out.shape() == x.shape() && k >= 1 && k <= E,
           "moe_mlp", "x " + shape_string(x.shape()) + ", router " + shape_string(router.shape()) + ", gate_up " +
                          shape_string(gate_up.shape()) + ", down " + shape_string(down.shape()) + ", k " +
                          std::to_string(k));
    cpu::moe_mlp(x.data_as<float>(), router.data_as<float>(), gate_up.data_as<float>(), down.data_as<float>(),
                 out.data_as<float>(), T, H, I, static_cast<int>(E), k, renormalize);
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override {
    expect_f32(x, "gather_rows", "x");
    expect_i32(rows, "gather_rows", "rows");
    expect(out.rank() == 2 && out.dim(0) == rows.numel() && out.dim(1) == x.dim(1),
           "gather_rows", "shape mismatch");
    cpu::gather_rows(x.data_as<float>(), rows.data_as<int32_t>(), out.data_as<float>(),
                     rows.numel(), x.dim(0), x.dim(1));
  }

  SamplerOutput sample(const Tensor& logits, const SamplingBatch& batch) override {
    expect_f32(logits, "sample", "logits");
    expect(logits.rank() == 2 && static_cast<size_t>(logits.dim(0)) == batch.size() &&
               batch.banned.size() == batch.size() && batch.tokens.size() == batch.size(),
           "sample", "batch does not match the logits' rows");
    return cpu::sample(logits.data_as<float>(), logits.dim(0), logits.dim(1), batch);
  }

  // The host computes as it is called: the results wait here for collect_sample().
  void sample_async(const Tensor& logits, const SamplingBatch& batch) override {
    expect(uncollected_.size() < 2, "sample_async", "a third sampling call before the first was collected");
    SamplerOutput out = sample(logits, batch);
    const int64_t R = static_cast<int64_t>(out.token.size());
    if (!sampled_.defined() || sampled_.numel() < R) sampled_ = empty({std::max<int64_t>(R, 64)}, DType::I32);
    std::copy(out.token.begin(), out.token.end(), sampled_.data_as<int32_t>());
    uncollected_.push_back(std::move(out));
  }
  SamplerOutput collect_sample() override {
    expect(!uncollected_.empty(), "collect_sample", "no sampling call is outstanding");
    SamplerOutput out = std::move(uncollected_.front());
    uncollected_.pop_front();
    return out;
  }
  Tensor sampled_tokens() override {
    if (!sampled_.defined()) sampled_ = empty({64}, DType::I32);
    return sampled_;
  }
  void fill_sampled_ids(Tensor& ids, const Tensor& rows, const Tensor& tokens) override {
    expect_i32(ids, "fill_sampled_ids", "ids");
    expect_i32(rows, "fill_sampled_ids", "rows");
    expect_i32(tokens, "fill_sampled_ids", "tokens");
    expect(rows.numel() == ids.numel(), "fill_sampled_ids", "ids and rows differ in length");
    int32_t* id = ids.data_as<int32_t>();
    const int32_t* row = rows.data_as<int32_t>();
    const int32_t* tok = tokens.data_as<int32_t>();
    for (int64_t t = 0; t < ids.numel(); ++t) {
      if (row[t] < 0) continue;
      expect(row[t] < tokens.numel(), "fill_sampled_ids", "row " + std::to_string(row[t]) + " has no sampled token");
      id[t] = tok[row[t]];
    }
  }

  // Copy bandwidth: a memcpy of 256 MiB (larger than any CPU cache) split over all threads, read
  // plus write counted. Matmul: our own linear() on 1024 x 1024 x 1024. Best of three each,
  // after a warm-up run.
  Ceilings measure_ceilings() override {
    using clock = std::chrono::steady_clock;
    auto best_of = [](int reps, const auto& body) {
      body();
      double best = 1e300;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = clock::now();
        body();
        best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count());
      }
      return best;
    };
    Ceilings c;
    const size_t n = size_t{256} << 20;
    Tensor src = empty({static_cast<int64_t>(n)}, DType::U8), dst = empty({static_cast<int64_t>(n)}, DType::U8);
    auto* s = static_cast<char*>(src.data());
    auto* d = static_cast<char*>(dst.data());
    auto parallel_copy = [&](bool fill) {
#pragma omp parallel
      {
        const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
        const size_t b = n * t / nt, e = n * (t + 1) / nt;
        if (fill) std::memset(s + b, 1, e - b), std::memset(d + b, 0, e - b);  // first touch, per thread
        else std::memcpy(d + b, s + b, e - b);
      }
    };
    parallel_copy(true);
    c.bytes_per_s = 2.0 * static_cast<double>(n) / best_of(3, [&] { parallel_copy(false); });

    const int64_t m = 1024;
    std::vector<float> a(static_cast<size_t>(m * m)), w(a.size()), out(a.size());
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) * 0.1f, w[i] = static_cast<float>(i % 5) * 0.1f;
    c.matmul_flops_per_s = 2.0 * static_cast<double>(m * m * m) /
                           best_of(3, [&] { cpu::linear(a.data(), w.data(), nullptr, out.data(), m, m, m); });
    return c;
  }

 private:
  std::deque<SamplerOutput> uncollected_;  // sample_async()'s results, oldest first
  Tensor sampled_;                          // the latest sampling call's tokens
  size_t budget_;                                // 0: no limit known
  std::shared_ptr<std::atomic<size_t>> live_;    // bytes held by this backend's tensors
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace nanovllm
