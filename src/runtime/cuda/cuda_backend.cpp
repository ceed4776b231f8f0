// The CUDA backend: bf16 weights and activations in device memory, ops from kernels/cuda and
// cuBLASLt, all queued on one stream. Memory (docs/engine.md, "Device memory"):
//   - outside a step, empty() is a cudaMalloc owned by the tensor (weights, KV cache, the
//     runner's fixed-capacity input buffers);
//   - inside a step, empty() is a bump allocation in the step arena, sized once by profiling;
//   - host-to-device copies inside a step go through pinned staging, double-buffered across
//     steps, so they are asynchronous and the host may reuse its vectors at once.
// Each op checks devices, dtypes and shapes, so a wiring mistake is an Error.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "kernels/cuda/gpu_sampler.h"
#include "kernels/cuda/ops.h"
#include "runtime/backend.h"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/device_arena.h"
#include "runtime/cuda/op_profiler.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"
#include "runtime/error.h"
#include "runtime/env_switch.h"

namespace nanovllm {
namespace {

constexpr size_t kGemmWorkspace = size_t{32} << 20;
constexpr size_t kStagingHalf = size_t{16} << 20;  // per step; larger copies go synchronously

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string("cuda backend: ") + op + ": " + what);
}
void expect_dev(const Tensor& t, DType dt, const char* op, const char* name) {
  expect(t.device() == Device::CUDA && t.dtype() == dt, op,
         std::string(name) + " must be a " + std::string(dtype_name(dt)) + " CUDA tensor, got " +
             std::string(dtype_name(t.dtype())) +
             (t.device() == Device::CUDA ? " on CUDA" : " on the CPU"));
}
void expect_bf16(const Tensor& t, const char* op, const char* name) { expect_dev(t, DType::BF16, op, name); }
void expect_i32(const Tensor& t, const char* op, const char* name) { expect_dev(t, DType::I32, op, name); }

void check_qk_norm_rope(const char* op, const Tensor& qkv, int nh, int nkv, int d, const Tensor* qw,
                        const Tensor* kw, const Tensor& cos_sin, const Tensor& positions) {
  expect_bf16(qkv, op, "qkv");
  expect_dev(cos_sin, DType::F32, op, "cos_sin");
  expect_i32(positions, op, "positions");
  if (qw) expect_bf16(*qw, op, "q_weight");
  if (kw) expect_bf16(*kw, op, "k_weight");
  expect(qkv.rank() == 2 && qkv.dim(1) == int64_t{nh + 2 * nkv} * d && positions.numel() == qkv.dim(0) &&
             cos_sin.rank() == 2 && cos_sin.dim(1) == d,
         op, "shape mismatch");
}

void check_store_kv(const char* op, const Tensor& qkv, int nkv, int d, const Tensor& k_cache,
                    const Tensor& v_cache, const AttentionMetadata& meta) {
  expect_bf16(qkv, op, "qkv");
  expect_bf16(k_cache, op, "k_cache");
  expect_bf16(v_cache, op, "v_cache");
  expect_i32(meta.slot_mapping, op, "slot_mapping");
  expect(k_cache.rank() == 4 && k_cache.shape() == v_cache.shape() && k_cache.dim(2) == nkv &&
             k_cache.dim(3) == d && meta.slot_mapping.numel() == qkv.dim(0),
         op, "shape mismatch");
}

// The fused small-batch products (rms_norm_linear, _silu, linear_add): x (T, K), weight
// (rows, K), out (T, out_cols), optional norm weight (K,) and bias (rows,), all bf16.
void check_fused_linear(const char* op, const Tensor& x, const Tensor* norm_w, const Tensor& w, const Tensor* bias,
                        const Tensor& out, int64_t out_cols) {
  expect_bf16(x, op, "x");
  expect_bf16(w, op, "weight");
  expect_bf16(out, op, "out");
  if (norm_w) expect_bf16(*norm_w, op, "norm weight");
  if (bias) expect_bf16(*bias, op, "bias");
  expect(x.rank() == 2 && w.rank() == 2 && out.rank() == 2 && x.dim(1) == w.dim(1) && out.dim(0) == x.dim(0) &&
             out.dim(1) == out_cols && (!norm_w || norm_w->numel() == x.dim(1)) &&
             (!bias || bias->numel() == w.dim(0)),
         op, "shapes x " + shape_string(x.shape()) + ", weight " + shape_string(w.shape()) + ", out " +
                 shape_string(out.shape()) + " do not fit");
  expect(gpu::gemv_fused_rows(x.dim(0)), op, "runs decode batches of 1, 2, 4 or 8 rows, got " +
                                                 std::to_string(x.dim(0)) + " (ask fuses_norm_linear first)");
}

class CudaStepGraph final : public StepGraph {
 public:
  CudaStepGraph(cudaGraphExec_t exec, cudaStream_t stream, DeviceArena& arena, size_t arena_end, OpProfiler* prof)
      : exec_(exec), stream_(stream), arena_(arena), arena_end_(arena_end), prof_(prof) {}
  ~CudaStepGraph() override { cudaGraphExecDestroy(exec_); }
  void replay() override {
    OpScope scope_(prof_, "graph replay (forward)");
    NANOVLLM_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
    arena_.reserve_to(arena_end_);  // its outputs live there until the next step
  }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
  DeviceArena& arena_;
  size_t arena_end_;
  OpProfiler* prof_;
};

constexpr int kCombineInSplitKernelMaxSeqs = 8;  // see decode_counters_
// NANOVLLM_PROFILE_OPS: a call that made its shape's GEMM plan (timing cuBLASLt's candidates
// and our GEMV on the GPU, ~1-100 ms) is counted apart from the op's other calls.
constexpr const char* kPlanMade = " [first call: plan made]";

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    const int count = cuda_device_count();
    if (device < 0 || device >= count)
      throw Error("cuda backend: no GPU " + std::to_string(device) + " (this machine has " + std::to_string(count) +
                  ")");
    NANOVLLM_CUDA_CHECK(cudaSetDevice(device));
    name_ = "cuda:" + std::to_string(device) + " (" + cuda_device_summary(device) + ")";
    NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&upload_stream_, cudaStreamNonBlocking));
    NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&reads_done_, cudaEventDisableTiming));
    NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
    if (OpProfiler::enabled_by_env()) prof_ = std::make_unique<OpProfiler>(stream_);
    if (const char* v = std::getenv("NANOVLLM_PROFILE_DECODE_STEP")) profiled_decode_step_ = std::atol(v);
    NANOVLLM_CUDA_CHECK(cudaMalloc(&gemm_ws_, kGemmWorkspace));
    gemm_ = std::make_unique<CublasLtGemm>(gemm_ws_, kGemmWorkspace);
    for (int i = 0; i < 2; ++i) {
      NANOVLLM_CUDA_CHECK(cudaMallocHost(&staging_[i], kStagingHalf));
      NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&staging_done_[i], cudaEventDisableTiming));
    }
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    prof_.reset();
    sampler_.reset();
    gemm_.reset();
    arena_.resize(0);
    cudaFree(gemm_ws_);
    cudaFree(decode_counters_);
    for (int i = 0; i < 2; ++i) {
      cudaFreeHost(staging_[i]);
      cudaEventDestroy(staging_done_[i]);
    }
    cudaStreamSynchronize(upload_stream_);
    cudaEventDestroy(reads_done_);
    cudaEventDestroy(uploaded_);
    cudaStreamDestroy(upload_stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }
  Device device() const override { return Device::CUDA; }
  DType compute_dtype() const override { return DType::BF16; }

  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override {
    const size_t bytes = checked_nbytes(shape, dtype, "cuda backend");
    if (in_step_) return Tensor(dtype, shape, Device::CUDA, nullptr, arena_.allocate(bytes));
    if (bytes == 0) return Tensor(dtype, shape, Device::CUDA, nullptr, nullptr);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error("cuda backend: out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB for a " +
                  shape_string(shape) + " tensor (" + std::to_string(free_b >> 20) + " of " +
                  std::to_string(total_b >> 20) + " MiB free)");
    }
    return Tensor(dtype, shape, Device::CUDA, std::shared_ptr<void>(p, [](void* q) { cudaFree(q); }), p);
  }

  void copy_from_host(Tensor& dst, const void* src, size_t nbytes) override {
    expect(dst.device() == Device::CUDA, "copy_from_host", "destination is not a CUDA tensor");
    expect(nbytes <= dst.nbytes(), "copy_from_host", "source larger than destination");
    if (nbytes == 0) return;
    OpScope scope_(in_step_ ? prof_.get() : nullptr, "upload");
    if (in_step_ && staging_used_ + nbytes <= kStagingHalf) {
      char* stage = static_cast<char*>(staging_[half_]) + staging_used_;
      std::memcpy(stage, src, nbytes);
      staging_used_ = (staging_used_ + nbytes + 255) / 256 * 256;
      if (!early_upload(dst.data())) {
        NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), stage, nbytes, cudaMemcpyHostToDevice, stream_));
        return;
      }
      // On the upload stream, as soon as the previous step's reads are done (reads_done_), so the
      // copy overlaps that step's sampling instead of sitting between two steps' kernels; the
      // step's own work waits for it. (staging_done_, recorded on stream_ after that wait, still
      // marks the staging half free.)
      NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(upload_stream_, reads_done_, 0));
      NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), stage, nbytes, cudaMemcpyHostToDevice, upload_stream_));
      NANOVLLM_CUDA_CHECK(cudaEventRecord(uploaded_, upload_stream_));
      NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(stream_, uploaded_, 0));
      return;
    }
    // Outside a step (loading) or too large for staging: a synchronous copy is fine.
    NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src, nbytes, cudaMemcpyHostToDevice, stream_));
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void copy_to_host(void* dst, const Tensor& src, size_t nbytes) override {
    expect(src.device() == Device::CUDA, "copy_to_host", "source is not a CUDA tensor");
    expect(nbytes <= src.nbytes(), "copy_to_host", "destination larger than source");
    if (nbytes == 0) return;
    NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(dst, src.data(), nbytes, cudaMemcpyDeviceToHost, stream_));
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void load_rows(Tensor& dst, int64_t row_offset, const TensorView& src) override {
    expect(dst.device() == Device::CUDA && (dst.dtype() == DType::BF16 || dst.dtype() == DType::F32), "load_rows",
           "dst must be a bf16 or float32 CUDA tensor");
    const int64_t rows = src.shape.empty() ? 1 : src.shape[0];
    const int64_t dst_rows = dst.rank() == 0 ? 1 : dst.dim(0);
    const int64_t row_elems = dst_rows ? dst.numel() / dst_rows : 0;
    expect(row_offset >= 0 && row_offset + rows <= dst_rows && src.numel() == rows * row_elems, "load_rows",
           "source " + shape_string(src.shape) + " does not fit rows [" + std::to_string(row_offset) + ", ...) of " +
               shape_string(dst.shape()));
    const size_t n = static_cast<size_t>(src.numel()), out_size = dtype_size(dst.dtype());
    char* out = static_cast<char*>(dst.data()) + static_cast<size_t>(row_offset * row_elems) * out_size;
    if (src.dtype == dst.dtype()) {  // straight from the mapped file
      NANOVLLM_CUDA_CHECK(cudaMemcpy(out, src.data, n * out_size, cudaMemcpyHostToDevice));
      return;
    }
    // Convert on the host in chunks (through float32), then upload.
    const size_t chunk = size_t{1} << 22, in_size = dtype_size(src.dtype);
    std::vector<float> f32(std::min(chunk, n));
    std::vector<uint16_t> b16(dst.dtype() == DType::BF16 ? f32.size() : 0);
    for (size_t b = 0; b < n; b += chunk) {
      const size_t len = std::min(chunk, n - b);
      convert_to_f32(src.dtype, src.data + b * in_size, f32.data(), len);
      const void* up = f32.data();
      if (dst.dtype() == DType::BF16) {
        for (size_t i = 0; i < len; ++i) b16[i] = f32_to_bf16(f32[i]);
        up = b16.data();
      }
      NANOVLLM_CUDA_CHECK(cudaMemcpy(out + b * out_size, up, len * out_size, cudaMemcpyHostToDevice));
    }
  }

  void synchronize() override { NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    OpScope scope_(prof_.get(), "embedding");
    expect_i32(ids, "embedding", "ids");
    expect_bf16(table, "embedding", "table");
    expect_bf16(out, "embedding", "out");
    expect(table.rank() == 2 && out.rank() == 2 && out.dim(0) == ids.numel() && out.dim(1) == table.dim(1),
           "embedding", "shape mismatch");
    gpu::embedding(ids.data_as<int32_t>(), table.data(), out.data(), ids.numel(), table.dim(0), table.dim(1),
                   stream_);
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    OpScope scope_(prof_.get(), "rms_norm");
    expect_bf16(x, "rms_norm", "x");
    expect_bf16(w, "rms_norm", "weight");
    expect_bf16(out, "rms_norm", "out");
    expect(x.shape() == out.shape() && w.numel() == x.dim(-1), "rms_norm", "shape mismatch");
    gpu::rms_norm(x.data(), w.data(), eps, out.data(), x.numel() / x.dim(-1), x.dim(-1), stream_);
  }

  void add_rms_norm(Tensor& x, Tensor& residual, const Tensor& w, float eps) override {
    OpScope scope_(prof_.get(), "add_rms_norm");
    expect_bf16(x, "add_rms_norm", "x");
    expect_bf16(residual, "add_rms_norm", "residual");
    expect_bf16(w, "add_rms_norm", "weight");
    expect(x.shape() == residual.shape() && w.numel() == x.dim(-1), "add_rms_norm", "shape mismatch");
    gpu::add_rms_norm(x.data(), residual.data(), w.data(), eps, x.numel() / x.dim(-1), x.dim(-1), stream_);
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    expect_bf16(x, "linear", "x");
    expect_bf16(w, "linear", "weight");
    expect_bf16(out, "linear", "out");
    expect(x.rank() == 2 && w.rank() == 2 && out.rank() == 2 && x.dim(1) == w.dim(1) && out.dim(0) == x.dim(0) &&
               out.dim(1) == w.dim(0),
           "linear", "shapes x " + shape_string(x.shape()) + ", weight " + shape_string(w.shape()) + ", out " +
                         shape_string(out.shape()) + " do not fit out = x weight^T");
    if (bias) {
      expect_bf16(*bias, "linear", "bias");
      expect(bias->numel() == w.dim(0), "linear", "bias size");
    }
    OpScope scope_(prof_.get(), prof_ ? "linear N=" + std::to_string(w.dim(0)) + " K=" + std::to_string(w.dim(1))
                                      : std::string());
    const size_t plans = gemm_->cached_plans();
    gemm_->linear(x.data(), w.data(), bias ? bias->data() : nullptr, out.data(), x.dim(0), w.dim(0), x.dim(1),
                  stream_);
    if (gemm_->cached_plans() != plans) scope_.set_apart(kPlanMade);
  }

  // Decode steps of 1, 2, 4 or 8 rows (the ladder sizes the GEMV's fused variants exist for)
  // of models up to kFuseMaxHidden wide. NANOVLLM_FUSE_NORM_LINEAR=1 fuses at any width, 0 never.
  // Why the width limit, measured on an H200 (batch-1 decode, off / on alternating, 2026-11-28):
  // Qwen3-0.6B (hidden 1024) 1.071 / 1.029, 1.050 / 1.008 ms per token, 4% faster fused;
  // Qwen3-1.7B (2048) 1.757 / 1.729, 2% faster; Qwen3-4B (2560) 3.296 / 3.342, 1% slower;
  // Qwen3-8B (4096) 4.947 / 4.978, 4.937 / 4.996, 1% slower. Timed alone (Nsight Compute), the
  // fused kernels of an 8B step take 5% less than the ops they replace, yet the unfused graph
  // is faster: its cuBLASLt picks and small kernels overlap better under PDL than the chain of
  // GEMVs. Why exactly is not pinned down (docs/performance.md has the numbers).
  static constexpr int64_t kFuseMaxHidden = 2048;
  bool fuses_norm_linear(int64_t tokens, int64_t hidden, const std::vector<int64_t>& in_features) const override {
    if (fuse_mode_ == FuseMode::kOff || !decode_step_ || !gpu::gemv_fused_rows(tokens)) return false;
    if (fuse_mode_ == FuseMode::kAuto && hidden > kFuseMaxHidden) return false;
    for (int64_t k : in_features)
      if (k < 8 || k % 8 != 0) return false;
    return true;
  }

  // The fused ops' one launch: gemv_fused with the k_split of the plain (T, plan_n, K) product's
  // plan (made, and timed on plan_out, when the shape is new; such a call is counted apart by
  // the op profiler), writing `out` (T, n).
  void fused_gemv(OpScope& scope, const Tensor& x, const Tensor& w, const Tensor* bias, void* plan_out,
                  int64_t plan_n, void* out, int64_t n, const Tensor* norm_w, float eps, gpu::GemvEpilogue epi) {
    const int64_t T = x.dim(0), K = x.dim(1);
    const void* b = bias ? bias->data() : nullptr;
    const size_t plans = gemm_->cached_plans();
    const int split = gemm_->gemv_split(x.data(), w.data(), b, plan_out, T, plan_n, K, stream_);
    if (gemm_->cached_plans() != plans) scope.set_apart(kPlanMade);
    gpu::gemv_fused(x.data(), w.data(), b, out, T, n, K, stream_, split, norm_w ? norm_w->data() : nullptr, eps, epi);
  }

  void rms_norm_linear(const Tensor& x, const Tensor& norm_w, float eps, const Tensor& w, const Tensor* bias,
                       Tensor& out) override {
    const char* op = "rms_norm_linear";
    OpScope scope_(prof_.get(), op);
    check_fused_linear(op, x, &norm_w, w, bias, out, w.dim(0));
    fused_gemv(scope_, x, w, bias, out.data(), w.dim(0), out.data(), w.dim(0), &norm_w, eps,
               gpu::GemvEpilogue::kStore);
  }

  void rms_norm_linear_silu(const Tensor& x, const Tensor& norm_w, float eps, const Tensor& w, Tensor& out,
                            Tensor& scratch) override {
    const char* op = "rms_norm_linear_silu";
    OpScope scope_(prof_.get(), op);
    expect(w.rank() == 2 && w.dim(0) % 2 == 0, op, "weight must pack gate and up rows, got " + shape_string(w.shape()));
    check_fused_linear(op, x, &norm_w, w, nullptr, out, w.dim(0) / 2);
    expect_bf16(scratch, op, "scratch");
    expect(scratch.rank() == 2 && scratch.dim(0) == x.dim(0) && scratch.dim(1) == w.dim(0), op, "scratch shape");
    // k_split as timed for the plain (T, 2I) product, on the scratch.
    fused_gemv(scope_, x, w, nullptr, scratch.data(), w.dim(0), out.data(), w.dim(0) / 2, &norm_w, eps,
               gpu::GemvEpilogue::kSiluMul);
  }

  void linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& residual, Tensor& scratch) override {
    const char* op = "linear_add";
    OpScope scope_(prof_.get(), op);
    check_fused_linear(op, x, nullptr, w, bias, residual, w.dim(0));
    expect_bf16(scratch, op, "scratch");
    expect(scratch.shape() == residual.shape() && scratch.data() != residual.data(), op,
           "scratch must be a separate buffer shaped like residual");
    fused_gemv(scope_, x, w, bias, scratch.data(), w.dim(0), residual.data(), w.dim(0), nullptr, 0.f,
               gpu::GemvEpilogue::kAddInto);
  }

  void qk_norm_rope(Tensor& qkv, int nh, int nkv, int d, const Tensor* qw, const Tensor* kw, float eps,
                    const Tensor& cos_sin, const Tensor& positions) override {
    OpScope scope_(prof_.get(), "qk_norm_rope");
    check_qk_norm_rope("qk_norm_rope", qkv, nh, nkv, d, qw, kw, cos_sin, positions);
    gpu::qk_norm_rope(qkv.data(), qkv.dim(0), nh, nkv, d, qw ? qw->data() : nullptr, kw ? kw->data() : nullptr, eps,
                      cos_sin.data_as<float>(), cos_sin.dim(0), positions.data_as<int32_t>(), stream_);
  }

  void silu_and_mul(const Tensor& gate_up, Tensor& out) override {
    OpScope scope_(prof_.get(), "silu_and_mul");
    expect_bf16(gate_up, "silu_and_mul", "gate_up");
    expect_bf16(out, "silu_and_mul", "out");
    expect(gate_up.rank() == 2 && out.rank() == 2 && out.dim(0) == gate_up.dim(0) &&
               gate_up.dim(1) == 2 * out.dim(1),
           "silu_and_mul", "shape mismatch");
    gpu::silu_and_mul(gate_up.data(), out.data(), out.dim(0), out.dim(1), stream_);
  }

  void store_kv(const Tensor& qkv, int nh, int nkv, int d, Tensor& k_cache, Tensor& v_cache,
                const AttentionMetadata& meta) override {
    OpScope scope_(prof_.get(), "store_kv");
    check_store_kv("store_kv", qkv, nkv, d, k_cache, v_cache, meta);
    gpu::store_kv(qkv.data(), qkv.dim(0), nh, nkv, d, k_cache.data(), v_cache.data(),
                  k_cache.dim(0) * k_cache.dim(1), meta.slot_mapping.data_as<int32_t>(), stream_);
  }

  void qk_norm_rope_store_kv(Tensor& qkv, int nh, int nkv, int d, const Tensor* qw, const Tensor* kw, float eps,
                             const Tensor& cos_sin, Tensor& k_cache, Tensor& v_cache,
                             const AttentionMetadata& meta) override {
    const char* op = "qk_norm_rope_store_kv";
    OpScope scope_(prof_.get(), op);
    check_qk_norm_rope(op, qkv, nh, nkv, d, qw, kw, cos_sin, meta.positions);
    check_store_kv(op, qkv, nkv, d, k_cache, v_cache, meta);
    gpu::qk_norm_rope_store_kv(qkv.data(), qkv.dim(0), nh, nkv, d, qw ? qw->data() : nullptr,
                               kw ? kw->data() : nullptr, eps, cos_sin.data_as<float>(), cos_sin.dim(0),
                               meta.positions.data_as<int32_t>(), k_cache.data(), v_cache.data(),
                               k_cache.dim(0) * k_cache.dim(1), meta.slot_mapping.data_as<int32_t>(), stream_);
  }

  void attention(const Tensor& qkv, int nh, int nkv, int d, float scale, const Tensor& k_cache,
                 const Tensor& v_cache, const AttentionMetadata& meta, Tensor& out) override {
    expect_bf16(qkv, "attention", "qkv");
    expect_bf16(k_cache, "attention", "k_cache");
    expect_bf16(v_cache, "attention", "v_cache");
    expect_bf16(out, "attention", "out");
    expect_i32(meta.context_lens, "attention", "context_lens");
    expect_i32(meta.block_tables, "attention", "block_tables");
    expect(k_cache.rank() == 4 && k_cache.shape() == v_cache.shape() && k_cache.dim(2) == nkv && k_cache.dim(3) == d &&
               meta.block_tables.rank() == 2 && meta.block_tables.dim(0) == meta.num_seqs &&
               out.dim(0) == qkv.dim(0) && out.numel() == qkv.dim(0) * nh * int64_t{d},
           "attention", "shape mismatch");
    const int bs = static_cast<int>(k_cache.dim(1));
    const int mbps = static_cast<int>(meta.block_tables.dim(1));
    const bool decode = meta.max_seqlen_q <= 1 && qkv.dim(0) == meta.num_seqs;  // one query row each
    OpScope scope_(prof_.get(), decode ? "attention decode" : "attention prefill");
    if (decode) {
      const size_t need = decode_workspace(meta.num_seqs, nh, nkv, d, meta.max_context_len);
      if (need > step_ws_bytes_) {  // one workspace per step, shared by every layer (one stream)
        step_ws_ = arena_.allocate(need);
        step_ws_bytes_ = need;
      }
      gpu::paged_attention_decode(qkv.data(), nh, nkv, d, scale, k_cache.data(), v_cache.data(), bs, k_cache.dim(0),
                                  meta.num_seqs, meta.context_lens.data_as<int32_t>(),
                                  meta.block_tables.data_as<int32_t>(), mbps, meta.max_context_len, out.data(),
                                  need ? step_ws_ : nullptr, need ? step_ws_bytes_ : 0, stream_,
                                  need && meta.num_seqs <= kCombineInSplitKernelMaxSeqs
                                      ? decode_counters(gpu::paged_attention_decode_counters(meta.num_seqs, nh, nkv))
                                      : nullptr);
      return;
    }
    expect_i32(meta.cu_seqlens_q, "attention", "cu_seqlens_q");
    gpu::paged_attention_prefill(qkv.data(), qkv.dim(0), nh, nkv, d, scale, k_cache.data(), v_cache.data(), bs,
                                 k_cache.dim(0), meta.num_seqs, meta.cu_seqlens_q.data_as<int32_t>(),
                                 meta.context_lens.data_as<int32_t>(), meta.block_tables.data_as<int32_t>(), mbps,
                                 out.data(), stream_);
  }

  std::string moe_unsupported(int E, int k, int64_t H, int64_t I) const override {
    return gpu::moe_unsupported(E, k, H, I);
  }
  void moe_mlp(const Tensor& x, const Tensor& router, const Tensor& gate_up, const Tensor& down, int k,
               bool renormalize, Tensor& out) override {
    const char* op = "moe_mlp";
    expect_bf16(x, op, "x");
    expect_bf16(router, op, "router");
    expect_bf16(gate_up, op, "gate_up");
    expect_bf16(down, op, "down");
    expect_bf16(out, op, "out");
    expect(x.rank() == 2 && router.rank() == 2 && gate_up.rank() == 2 && down.rank() == 2 && out.shape() == x.shape(),
           op, "x, router, gate_up, down and out must be matrices, out shaped like x");
    const int64_t T = x.dim(0), H = x.dim(1), E = router.dim(0), I = down.dim(1);
    expect(router.dim(1) == H && gate_up.dim(0) == E * 2 * I && gate_up.dim(1) == H && down.dim(0) == E * H, op,
           "shapes x " + shape_string(x.shape()) + ", router " + shape_string(router.shape()) + ", gate_up " +
               shape_string(gate_up.shape()) + ", down " + shape_string(down.shape()) + " do not fit");
    if (T == 0) return;
    Tensor logits = empty({T, E}, DType::BF16);
    linear(x, router, nullptr, logits);  // bf16 logits, as Hugging Face's bf16 router gives
    OpScope scope_(prof_.get(), op);
    const size_t bytes = gpu::moe_workspace_bytes(T, static_cast<int>(E), k, H, I, decode_step_);
    Tensor ws = empty({static_cast<int64_t>(bytes)}, DType::U8);
    gpu::moe_mlp(x.data(), logits.data(), gate_up.data(), down.data(), out.data(), T, H, I, static_cast<int>(E), k,
                 renormalize, decode_step_, ws.data(), bytes, stream_);
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override {
    OpScope scope_(prof_.get(), "gather_rows");
    expect_bf16(x, "gather_rows", "x");
    expect_i32(rows, "gather_rows", "rows");
    expect_bf16(out, "gather_rows", "out");
    expect(x.rank() == 2 && out.rank() == 2 && out.dim(0) == rows.numel() && out.dim(1) == x.dim(1), "gather_rows",
           "shape mismatch");
    // A row gather is an embedding lookup with x as the table.
    gpu::embedding(rows.data_as<int32_t>(), x.data(), out.data(), rows.numel(), x.dim(0), x.dim(1), stream_);
  }

  // Refuses (GpuSampler::sample) while a sample_async() is uncollected: its results would be
  // the ones collected.
  SamplerOutput sample(const Tensor& logits, const SamplingBatch& batch) override {
    OpScope scope_(prof_.get(), "sample");
    mark_reads_done();
    return sampler_for(logits, batch, "sample").sample(logits.data(), logits.dim(0), batch);
  }

  void sample_async(const Tensor& logits, const SamplingBatch& batch) override {
    OpScope scope_(prof_.get(), "sample");
    mark_reads_done();
    sampler_for(logits, batch, "sample_async").launch(logits.data(), logits.dim(0), batch);
  }

  SamplerOutput collect_sample() override {
    expect(sampler_ != nullptr, "collect_sample", "no sampling call is outstanding");
    return sampler_->collect();
  }

  Tensor sampled_tokens() override {
    expect(sampler_ != nullptr, "sampled_tokens", "the sampler is not set up (reserve() first)");
    auto* p = const_cast<int32_t*>(sampler_->device_tokens());
    // A view: the sampler owns the memory and keeps it for its lifetime.
    return Tensor(DType::I32, {sampler_->max_rows()}, Device::CUDA, std::shared_ptr<void>(p, [](void*) {}), p);
  }

  void fill_sampled_ids(Tensor& ids, const Tensor& rows, const Tensor& tokens) override {
    OpScope scope_(prof_.get(), "fill_sampled_ids");
    expect_i32(ids, "fill_sampled_ids", "ids");
    expect_i32(rows, "fill_sampled_ids", "rows");
    expect_i32(tokens, "fill_sampled_ids", "tokens");
    expect(rows.numel() == ids.numel(), "fill_sampled_ids", "ids and rows differ in length");
    gpu::fill_sampled_ids(ids.data_as<int32_t>(), rows.data_as<int32_t>(), tokens.data_as<int32_t>(), ids.numel(),
                          stream_);
  }

  void reserve(const StepLimits& limits) override {
    limits_ = limits;
    make_sampler(limits);
  }

  void begin_step(bool decode) override {
    expect(!in_step_, "begin_step", "a step is already open");
    half_ ^= 1;  // the other half's copies belong to the previous step, still maybe in flight
    NANOVLLM_CUDA_CHECK(cudaEventSynchronize(staging_done_[half_]));  // two steps back: done
    staging_used_ = 0;
    reads_marked_ = false;
    arena_.reset();
    step_ws_ = nullptr;
    step_ws_bytes_ = 0;
    in_step_ = true;
    gemm_->set_per_shape(decode);
    decode_step_ = decode;
    if (prof_) prof_->begin_step(decode);
    profiling_window_ = decode && ++decode_steps_ == profiled_decode_step_;
    if (profiling_window_) NANOVLLM_CUDA_CHECK(cudaProfilerStart());
  }

  void end_step() override {
    if (!in_step_) return;
    in_step_ = false;
    decode_step_ = false;
    gemm_->set_per_shape(false);
    if (!reads_marked_) NANOVLLM_CUDA_CHECK(cudaEventRecord(reads_done_, stream_));
    NANOVLLM_CUDA_CHECK(cudaEventRecord(staging_done_[half_], stream_));
    if (prof_) prof_->end_step();
    if (profiling_window_) {
      NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
      NANOVLLM_CUDA_CHECK(cudaProfilerStop());
      profiling_window_ = false;
    }
  }

  void begin_profile() override { arena_.begin_measuring(); }
  size_t end_profile() override {
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return arena_.end_measuring();
  }
  void set_step_memory(size_t bytes) override { arena_.resize(bytes); }

  std::optional<std::pair<size_t, size_t>> device_memory() override {
    size_t free_b = 0, total_b = 0;
    NANOVLLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return std::make_pair(free_b, total_b);
  }

  std::unique_ptr<StepGraph> capture(const std::function<void()>& body) override {
    expect(in_step_, "capture", "graphs are captured inside a step");
    expect(!arena_.measuring(), "capture", "cannot capture while profiling");
    NANOVLLM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    if (prof_) prof_->set_capturing(true);
    struct Uncapture {
      OpProfiler* p;
      ~Uncapture() {
        if (p) p->set_capturing(false);
      }
    } uncapture{prof_.get()};
    try {
      body();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    NANOVLLM_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (err != cudaSuccess) NANOVLLM_CUDA_CHECK(err);
    return std::make_unique<CudaStepGraph>(exec, stream_, arena_, arena_.used(), prof_.get());
  }

  // Device-to-device copy of 1 GiB (read + write counted) and a bf16 8192^3 product, each the
  // best of several timed runs after a warm-up: the roofline's ceilings, measured here and now.
  Ceilings measure_ceilings() override {
    expect(!in_step_, "measure_ceilings", "not inside a step");
    Ceilings c;
    cudaEvent_t e0, e1;
    NANOVLLM_CUDA_CHECK(cudaEventCreate(&e0));
    NANOVLLM_CUDA_CHECK(cudaEventCreate(&e1));
    auto best_ms = [&](const std::function<void()>& work, int reps) {
      work();
      float best = 1e30f;
      for (int i = 0; i < reps; ++i) {
        NANOVLLM_CUDA_CHECK(cudaEventRecord(e0, stream_));
        work();
        NANOVLLM_CUDA_CHECK(cudaEventRecord(e1, stream_));
        NANOVLLM_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        best = std::min(best, ms);
      }
      return double(best);
    };
    {
      const size_t n = size_t{1} << 30;
      Tensor a = empty({int64_t(n)}, DType::U8), b = empty({int64_t(n)}, DType::U8);
      NANOVLLM_CUDA_CHECK(cudaMemsetAsync(a.data(), 1, n, stream_));
      const double ms = best_ms([&] {
        NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), n, cudaMemcpyDeviceToDevice, stream_));
      }, 10);
      c.bytes_per_s = 2.0 * double(n) / (ms * 1e-3);
    }
    {
      const int64_t n = 8192;
      Tensor x = empty({n, n}, DType::BF16), w = empty({n, n}, DType::BF16), y = empty({n, n}, DType::BF16);
      NANOVLLM_CUDA_CHECK(cudaMemsetAsync(x.data(), 0x3c, x.nbytes(), stream_));
      NANOVLLM_CUDA_CHECK(cudaMemsetAsync(w.data(), 0x3c, w.nbytes(), stream_));
      // The heuristic's plan, untimed: timing every candidate of an 8192^3 product first is
      // ~0.4 s of full-power GEMMs, after which the card measured 14% lower (power-capped).
      const bool tuning = gemm_->autotuning();
      gemm_->set_autotune(false);
      const double ms = best_ms([&] { linear(x, w, nullptr, y); }, 10);
      gemm_->set_autotune(tuning);
      c.matmul_flops_per_s = 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return c;
  }

 private:
  // At least n zeroed counters for paged_attention_decode. Grows (outside graph capture) on the
  // first decode step of a new size; the runner's largest decode step runs before any capture.
  int* decode_counters(size_t n) {
    if (n <= decode_counters_n_) return decode_counters_;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    NANOVLLM_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    expect(capturing == cudaStreamCaptureStatusNone, "attention",
           "decode counters for " + std::to_string(n) + " (sequence, head) groups were not set up before graph capture");
    NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be in use
    NANOVLLM_CUDA_CHECK(cudaFree(decode_counters_));
    decode_counters_ = nullptr;
    decode_counters_n_ = 0;
    NANOVLLM_CUDA_CHECK(cudaMalloc(&decode_counters_, n * sizeof(int)));
    NANOVLLM_CUDA_CHECK(cudaMemsetAsync(decode_counters_, 0, n * sizeof(int), stream_));
    decode_counters_n_ = n;
    return decode_counters_;
  }

  size_t decode_workspace(int num_seqs, int nh, int nkv, int d, int max_ctx) {
    const auto key = std::make_tuple(num_seqs, nh, nkv, d, max_ctx);
    auto it = decode_ws_sizes_.find(key);
    if (it != decode_ws_sizes_.end()) return it->second;
    const size_t bytes = gpu::paged_attention_decode_workspace_bytes(num_seqs, nh, nkv, d, max_ctx);
    decode_ws_sizes_.emplace(key, bytes);
    return bytes;
  }

  GpuSampler& sampler_for(const Tensor& logits, const SamplingBatch& batch, const char* op) {
    expect_bf16(logits, op, "logits");
    expect(logits.rank() == 2 && static_cast<size_t>(logits.dim(0)) == batch.size() &&
               batch.banned.size() == batch.size() && batch.tokens.size() == batch.size(),
           op, "batch does not match the logits' rows");
    if (!sampler_ || sampler_vocab_ != logits.dim(1)) {
      // Sized by reserve(); this fallback serves callers that never reserve (tests, tools).
      expect(!sampler_ || sampler_->outstanding() == 0, op,
             "the vocabulary changed while a sampling call is uncollected");
      StepLimits l = limits_;
      l.max_seqs = std::max<int>(l.max_seqs, static_cast<int>(logits.dim(0)));
      l.vocab_size = logits.dim(1);
      l.max_model_len = std::max(l.max_model_len, 4096);
      make_sampler(l);
    }
    return *sampler_;
  }

  void make_sampler(const StepLimits& l) {
    if (l.vocab_size <= 0 || l.max_seqs <= 0) return;
    sampler_.reset();
    sampler_ = std::make_unique<GpuSampler>(l.max_seqs, l.vocab_size,
                                            int64_t{l.max_seqs} * std::max(l.max_model_len, 1),
                                            std::max(l.max_logprobs, 0), stream_);
    sampler_vocab_ = l.vocab_size;
  }

  // Early uploads (copy_from_host inside a step). A step reads its long-lived input buffers (the
  // runner's) only before it samples; the sampler reads only its own buffers and the logits.
  // So the next step's inputs may be copied once the previous step's work up to its sampling is
  // done: reads_done_ is recorded on stream_ where a step samples (or at its end if it does
  // not), and the upload stream waits for it. Step (arena) memory is excluded (the next step's
  // arena reuses addresses the sampler may still be reading: the logits), as are uploads during
  // a capture or the arena's measuring. Measured on an H200 (docs/performance.md): copies in
  // stream_ between a step's kernels held the GPU ~5 us each at batch 1. NANOVLLM_EARLY_UPLOAD=0:
  // every copy in stream order.
  bool early_upload(const void* dst) const {
    static const bool on = env_switch("NANOVLLM_EARLY_UPLOAD", true);
    if (!on || arena_.measuring() || arena_.contains(dst)) return false;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    NANOVLLM_CUDA_CHECK(cudaStreamIsCapturing(stream_, &status));
    return status == cudaStreamCaptureStatusNone;
  }
  void mark_reads_done() {
    if (!in_step_) return;
    NANOVLLM_CUDA_CHECK(cudaEventRecord(reads_done_, stream_));
    reads_marked_ = true;
  }

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t upload_stream_ = nullptr;
  cudaEvent_t reads_done_ = nullptr, uploaded_ = nullptr;
  bool reads_marked_ = false;  // this step recorded reads_done_ where it sampled
  void* gemm_ws_ = nullptr;
  // Decode attention's split counters (ops.h): long-lived, zeroed once, left zero by every call.
  // Used (splits combined inside the split kernel, one launch) only for small batches: measured
  // on an H200 (CudaAttentionPerf.DecodeTiming), one kernel was faster at 1-8 sequences (1 x 4096
  // keys 19 -> 16 us) but slower at 64-256 (bench.py's mix 0.358 -> 0.390 ms), where the
  // end-of-CTA fence and count cost more than the second launch. The output bits are the same
  // either way, so the choice keeps decode batch invariant.
  int* decode_counters_ = nullptr;
  size_t decode_counters_n_ = 0;
  std::unique_ptr<CublasLtGemm> gemm_;
  DeviceArena arena_;
  bool in_step_ = false;
  bool decode_step_ = false;  // inside a decode step (begin_step's `decode`)
  enum class FuseMode { kAuto, kOff, kOn };
  static FuseMode fuse_mode_from_env() {  // NANOVLLM_FUSE_NORM_LINEAR: unset = auto, 0 = off, else on
    const char* v = std::getenv("NANOVLLM_FUSE_NORM_LINEAR");
    if (!v || !*v) return FuseMode::kAuto;
    return std::string(v) == "0" ? FuseMode::kOff : FuseMode::kOn;
  }
  const FuseMode fuse_mode_ = fuse_mode_from_env();
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};
  int half_ = 0;
  size_t staging_used_ = 0;
  void* step_ws_ = nullptr;
  size_t step_ws_bytes_ = 0;
  std::map<std::tuple<int, int, int, int, int>, size_t> decode_ws_sizes_;
  StepLimits limits_;
  std::unique_ptr<GpuSampler> sampler_;
  int64_t sampler_vocab_ = 0;
  std::unique_ptr<OpProfiler> prof_;  // NANOVLLM_PROFILE_OPS only
  // NANOVLLM_PROFILE_DECODE_STEP=N: the N-th decode step (graph captures count) runs between
  // cudaProfilerStart and Stop, so `ncu --profile-from-start off` sees that one step's kernels.
  long profiled_decode_step_ = 0, decode_steps_ = 0;
  bool profiling_window_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }
bool cuda_backend_available() { return cuda_device_count() > 0; }

}  // namespace nanovllm
