// bf16 matrix products through cuBLASLt: out (M, N) = x (M, K) @ w (N, K)^T [+ bias (N,)], with
// float32 accumulation and one bf16 rounding, as torch's F.linear in bf16 computes it.
//
// The algorithm for each (M, N, K, bias, alignment) is chosen once and cached with its
// descriptors, so a step only calls cublasLtMatmul: for decode row counts (per-shape mode) by
// timing cuBLASLt's candidates on the first call's operands, otherwise by its heuristic. Split-K algorithms are
// skipped: without them each output is one float32 sum along K in order, which keeps a row's
// result independent of how many other rows share the product (batch invariance; see
// docs/engine.md). Queries happen on the host only, so a first call inside a CUDA-graph
// capture is still safe, but the runner warms every shape up eagerly before capturing.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>

namespace nanovllm {

class CublasLtGemm {
 public:
  // `workspace` (device, 256-byte aligned) stays owned by the caller and must outlive this.
  CublasLtGemm(void* workspace, size_t workspace_bytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Queues the product on `stream`. bias may be null. Pointers to bf16 device memory.
  void linear(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
              cudaStream_t stream);
  // For the fused GEMV variants (kernels/cuda/gemv.cu, gemv_fused): the k_split at which our
  // GEMV timed faster in this plain shape's per-M plan, whether or not it beat cuBLASLt (the
  // plan is made, and timed on these operands, when new: `out` is overwritten). Untimed
  // (NANOVLLM_GEMM_AUTOTUNE=0, or first seen inside a capture): 4 for N <= 8192, else 1.
  int gemv_split(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N, int64_t K,
                 cudaStream_t stream);
  size_t cached_plans() const { return plans_.size(); }
  // true: each row count M gets its own best algorithm (decode batches, whose M is a ladder
  // size). false (default): one algorithm per (N, K), chosen for a large M and used for every M,
  // so each row's bits do not depend on how many rows the product has.
  void set_per_shape(bool on) { per_shape_ = on; }
  // false: plans made from now on take cuBLASLt's heuristic pick, untimed (the ceiling
  // measurement: timing candidates first would run the GPU hot and lower what it measures).
  void set_autotune(bool on) { autotune_ = on; }
  bool autotuning() const { return autotune_; }

  struct Operands {  // one call's own pointers, for timing candidates on them
    const void *x, *w, *bias;
    void* out;
    int64_t M, N, K;
    int align;
    cudaStream_t stream;
  };

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    int gemv_split = 0;  // our small-batch kernel (kernels/cuda/gemv.cu) timed faster: its k_split
    int gemv_best = 0;   // the GEMV's faster k_split when timed (won or not), else 0
  };
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, int, bool>;  // M, N, K, bias, alignment, per-shape
  Plan& plan_for(const Key& key, const Operands& ops);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
  // (N, K, bias, alignment) -> (found, algorithm) picked at a large M
  std::map<std::tuple<int64_t, int64_t, bool, int>, std::pair<bool, cublasLtMatmulAlgo_t>> canonical_;
  bool per_shape_ = false;
  bool autotune_ = true;  // NANOVLLM_GEMM_AUTOTUNE=0: cuBLASLt's heuristic pick, untimed
};

}  // namespace nanovllm
