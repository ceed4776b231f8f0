#include "runtime/cuda/cublaslt_gemm.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/env_switch.h"
#include "runtime/error.h"

#define NANOVLLM_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                               \
    cublasStatus_t st_ = (call);                                                                     \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                \
      throw ::nanovllm::Error(std::string("cuBLASLt error at ") + __FILE__ + ":" +                   \
                              std::to_string(__LINE__) + ": " #call " failed: " +                    \
                              cublasLtGetStatusName(st_) + " (" + cublasLtGetStatusString(st_) + ")"); \
  } while (0)

namespace nanovllm {
namespace {

int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  for (int a : {256, 128, 64, 32, 16, 8, 4})
    if (v % a == 0) return a;
  return 2;
}

// The alignment (bytes, at most 16) all of a product's operands share: part of a plan's key.
int operands_alignment(const void* x, const void* w, const void* bias, const void* out) {
  const int align = std::min({alignment_of(x), alignment_of(w), alignment_of(out), 16});
  return bias ? std::min(align, alignment_of(bias)) : align;
}

int32_t algo_attr(const cublasLtMatmulAlgo_t& a, cublasLtMatmulAlgoConfigAttributes_t attr) {
  int32_t v = 0;  // every attribute logged here is a 32-bit integer or an enum of that size
  size_t written = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&a, attr, &v, sizeof(v), &written);
  return v;
}

// NANOVLLM_GEMM_LOG=1: one stderr line per plan made, to see which algorithm each shape runs
// (and whether a shape fell back from its canonical plan: a row-invariance hazard).
bool gemm_log_on() {
  static const bool on = env_switch("NANOVLLM_GEMM_LOG", false);
  return on;
}

}  // namespace

CublasLtGemm::CublasLtGemm(void* workspace, size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes), autotune_(env_switch("NANOVLLM_GEMM_AUTOTUNE", true)) {
  NANOVLLM_CUBLAS_CHECK(cublasLtCreate(&handle_));
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (handle_) cublasLtDestroy(handle_);
}

// Row-major out (M, N) = x (M, K) w (N, K)^T is, in cuBLAS's column-major terms,
// out^T (N, M) = w^T... i.e. C (N x M) = op(A) B with A = w stored (K x N), op(A) = A^T, and
// B = x stored (K x M).
namespace {

struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  void destroy() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
    *this = Descs{};
  }
};

Descs make_descs(int64_t M, int64_t N, int64_t K, bool bias) {
  Descs d;
  NANOVLLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  NANOVLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  NANOVLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    NANOVLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    NANOVLLM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  NANOVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, CUDA_R_16BF, K, N, K));
  NANOVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, CUDA_R_16BF, K, M, K));
  NANOVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_16BF, N, M, N));
  return d;
}

// cuBLASLt's heuristic answers for these descriptors (up to `ask`), in its order of
// preference, under our workspace and the operands' alignment. Empty when it has none.
std::vector<cublasLtMatmulHeuristicResult_t> heuristic_results(cublasLtHandle_t h, const Descs& d, size_t workspace,
                                                               int align, int ask, cublasStatus_t& status) {
  cublasLtMatmulPreference_t pref;
  NANOVLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace;
  const uint32_t al = static_cast<uint32_t>(align);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(ask));
  int found = 0;
  status = cublasLtMatmulAlgoGetHeuristic(h, d.op, d.a, d.b, d.c, d.c, pref, ask, results.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  results.resize(status == CUBLAS_STATUS_SUCCESS ? static_cast<size_t>(found) : 0);
  return results;
}

// An algorithm's split-K factor and reduction scheme.
void split_k_of(const cublasLtMatmulAlgo_t& algo, int32_t& splits, uint32_t& scheme) {
  splits = 1;
  scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
  size_t written = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits), &written);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof(scheme),
                                       &written);
}

// cuBLASLt's candidates for these descriptors, in its order of preference, without in-place
// split-K reductions (those accumulate through the output in whatever order CTAs finish).
std::vector<cublasLtMatmulAlgo_t> deterministic_candidates(cublasLtHandle_t h, const Descs& d, size_t workspace,
                                                           int align) {
  cublasStatus_t st;
  std::vector<cublasLtMatmulAlgo_t> out;
  for (const auto& r : heuristic_results(h, d, workspace, align, 24, st)) {
    if (r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > workspace) continue;
    int32_t splits;
    uint32_t scheme;
    split_k_of(r.algo, splits, scheme);
    if (splits > 1 && scheme == CUBLASLT_REDUCTION_SCHEME_INPLACE) continue;
    out.push_back(r.algo);
  }
  return out;
}

// cuBLASLt's pick for these descriptors: the first without split-K (one in-order float32 sum
// along K); else the first whose split-K reduction is not in place (deterministic); else its
// first choice. false when it has none.
bool heuristic_pick(cublasLtHandle_t h, const Descs& d, size_t workspace, int align, cublasLtMatmulAlgo_t& algo,
                    std::string& why) {
  cublasStatus_t st;
  const std::vector<cublasLtMatmulHeuristicResult_t> results = heuristic_results(h, d, workspace, align, 16, st);
  const int found = static_cast<int>(results.size());
  int pick = -1, deterministic = -1, first = -1;
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    if (first < 0) first = i;
    int32_t splits;
    uint32_t scheme;
    split_k_of(results[i].algo, splits, scheme);
    if (splits <= 1 && pick < 0) pick = i;
    if (scheme != CUBLASLT_REDUCTION_SCHEME_INPLACE && deterministic < 0) deterministic = i;
  }
  if (pick < 0) pick = deterministic >= 0 ? deterministic : first;
  if (pick < 0) {
    why = std::string("status ") + cublasLtGetStatusName(st) + ", " + std::to_string(found) + " candidates";
    return false;
  }
  algo = results[pick].algo;
  return true;
}

// GPU time of one `launch` (ms, averaged over kReps), measured on a CUDA graph of kReps
// launches so that host launch overhead (several µs per cublasLtMatmul call, more than many
// decode-size products take) does not hide the kernels' own speed. -1 if a launch refuses or
// the capture fails.
float graph_time_ms(cudaStream_t stream, const std::function<bool()>& launch, cudaEvent_t e0, cudaEvent_t e1) {
  constexpr int kReps = 10;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  bool fine = true;
  for (int r = 0; r < kReps && fine; ++r) fine = launch();
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!fine || end != cudaSuccess || !graph || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return -1;
  }
  cudaGraphDestroy(graph);
  float ms = -1;
  if (cudaGraphLaunch(exec, stream) == cudaSuccess && cudaEventRecord(e0, stream) == cudaSuccess &&
      cudaGraphLaunch(exec, stream) == cudaSuccess && cudaEventRecord(e1, stream) == cudaSuccess &&
      cudaEventSynchronize(e1) == cudaSuccess && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess)
    ms /= kReps;
  else
    ms = -1;
  cudaGraphExecDestroy(exec);
  cudaGetLastError();
  return ms;
}

// Times each deterministic candidate, and for M <= 8 our GEMV (both k_split variants), on the
// caller's own operands (its output is overwritten, then rewritten by the real product) and
// keeps the fastest; gemv_split is the GEMV's k_split when it won, else 0.
// Decode steps have few, fixed row counts (the batch-size ladder), where cuBLASLt's heuristic
// often leaves SMs idle; timing costs a few milliseconds per shape, once, at start. Not while a
// graph is being captured (the runner's eager warm-up makes every plan first).
bool autotune(cublasLtHandle_t handle_, void* workspace_, size_t workspace_bytes_, const Descs& d,
              const CublasLtGemm::Operands& ops, cublasLtMatmulAlgo_t& best, float& best_ms, float& first_ms,
              int& gemv_split, int& gemv_best) {
  gemv_split = 0;
  gemv_best = 0;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(ops.stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone)
    return false;
  const std::vector<cublasLtMatmulAlgo_t> cands = deterministic_candidates(handle_, d, workspace_bytes_, ops.align);
  if (cands.empty()) return false;
  if (ops.bias)
    NANOVLLM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ops.bias, sizeof(ops.bias)));
  cudaEvent_t e0, e1;
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e0));
  NANOVLLM_CUDA_CHECK(cudaEventCreate(&e1));
  const float one = 1.f, zero = 0.f;
  best_ms = -1;
  for (size_t i = 0; i < cands.size(); ++i) {
    const cublasLtMatmulAlgo_t& a = cands[i];
    auto run = [&] {
      return cublasLtMatmul(handle_, d.op, &one, ops.w, d.a, ops.x, d.b, &zero, ops.out, d.c, ops.out, d.c, &a,
                            workspace_, workspace_bytes_, ops.stream) == CUBLAS_STATUS_SUCCESS;
    };
    if (!run()) continue;  // eager first: a candidate that cannot run is skipped
    const float ms = graph_time_ms(ops.stream, run, e0, e1);
    if (ms < 0) continue;
    if (i == 0) first_ms = ms;
    if (best_ms < 0 || ms < best_ms) {
      best_ms = ms;
      best = a;
    }
  }
  float gemv_best_ms = -1;
  if (best_ms >= 0 && gpu::gemv_supported(ops.M, ops.N, ops.K, ops.x, ops.w, ops.bias, ops.out))
    for (int k_split : {1, 4}) {
      auto gemv = [&] {
        gpu::gemv(ops.x, ops.w, ops.bias, ops.out, ops.M, ops.N, ops.K, ops.stream, k_split);
        return true;
      };
      gemv();
      const float ms = graph_time_ms(ops.stream, gemv, e0, e1);
      if (ms >= 0 && (gemv_best_ms < 0 || ms < gemv_best_ms)) {
        gemv_best_ms = ms;
        gemv_best = k_split;
      }
      if (ms >= 0 && ms < best_ms) {
        best_ms = ms;
        gemv_split = k_split;
      }
    }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGetLastError();
  return best_ms >= 0;
}

}  // namespace

// Row-major out (M, N) = x (M, K) w (N, K)^T is, in cuBLAS's column-major terms,
// C (N x M) = op(A) B with A = w stored (K x N), op(A) = A^T, and B = x stored (K x M).
CublasLtGemm::Plan& CublasLtGemm::plan_for(const Key& key, const Operands& ops) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [M, N, K, bias, align, per_shape] = key;
  Descs d = make_descs(M, N, K, bias);
  cublasLtMatmulAlgo_t algo{};
  std::string why;
  bool ok = false;
  float tuned_ms = -1, first_ms = -1;
  int gemv_split = 0, gemv_best = 0;
  if (per_shape && autotune_)
    ok = autotune(handle_, workspace_, workspace_bytes_, d, ops, algo, tuned_ms, first_ms, gemv_split, gemv_best);
  if (!per_shape) {
    // One algorithm per weight shape, picked at a large M and checked for this one.
    constexpr int64_t kCanonicalM = 4096;
    const auto ckey = std::make_tuple(N, K, bias, align);
    auto c = canonical_.find(ckey);
    if (c == canonical_.end()) {
      cublasLtMatmulAlgo_t a{};
      bool found = false;
      // A large first product (the runner's first is its profiling step, the largest prefill)
      // times cuBLASLt's candidates on its own operands; a small one takes the heuristic's
      // pick for M = 4096. Either way the one algorithm then serves every M.
      constexpr int64_t kTimeFromM = 512;
      if (autotune_ && M >= kTimeFromM) {
        float t_ms = -1, f_ms = -1;
        int gemv = 0, unused = 0;
        found = autotune(handle_, workspace_, workspace_bytes_, d, ops, a, t_ms, f_ms, gemv, unused) && gemv == 0;
        if (found && gemm_log_on())
          std::fprintf(stderr, "[gemm] canonical for N=%lld K=%lld timed at M=%lld: %.2f us (first choice %.2f us)\n",
                       static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(M), 1e3 * t_ms,
                       1e3 * f_ms);
      }
      if (!found) {
        Descs big = make_descs(kCanonicalM, N, K, bias);
        std::string w;
        found = heuristic_pick(handle_, big, workspace_bytes_, align, a, w);
        big.destroy();
      }
      c = canonical_.emplace(ckey, std::make_pair(found, a)).first;
    }
    if (c->second.first) {
      cublasLtMatmulHeuristicResult_t check{};
      ok = cublasLtMatmulAlgoCheck(handle_, d.op, d.a, d.b, d.c, d.c, &c->second.second, &check) ==
               CUBLAS_STATUS_SUCCESS &&
           check.workspaceSize <= workspace_bytes_;
      if (ok) algo = c->second.second;
    }
  }
  const char* how = per_shape ? (ok ? "per-M,timed" : "per-M") : ok ? "canonical" : "canonical-rejected,per-M";
  if (ok && tuned_ms >= 0 && gemm_log_on())
    std::fprintf(stderr, "[gemm] M=%lld N=%lld K=%lld timed: %.2f us%s (cuBLASLt's first choice %.2f us)\n",
                 static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), 1e3 * tuned_ms,
                 gemv_split == 4 ? " with our gemv (k_split 4)" : gemv_split ? " with our gemv" : "", 1e3 * first_ms);
  if (!ok) ok = heuristic_pick(handle_, d, workspace_bytes_, align, algo, why);
  if (ok && gemm_log_on())
    std::fprintf(stderr,
                 "[gemm] M=%lld N=%lld K=%lld bias=%d align=%d %s: algo %d tile %d stages %d splitK %d "
                 "reduction %d swizzle %d custom %d\n",
                 static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), int(bias), align, how,
                 algo_attr(algo, CUBLASLT_ALGO_CONFIG_ID), algo_attr(algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                 algo_attr(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID), algo_attr(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                 algo_attr(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
                 algo_attr(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                 algo_attr(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION));
  if (!ok) {
    d.destroy();
    throw Error("linear: cuBLASLt has no bf16 algorithm for M=" + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K) + " (alignment " + std::to_string(align) + " bytes; " + why + ")");
  }
  Plan p;
  p.op = d.op;
  p.a = d.a;
  p.b = d.b;
  p.c = d.c;
  p.algo = algo;
  p.gemv_split = gemv_split;
  p.gemv_best = gemv_best;
  return plans_.emplace(key, p).first->second;
}

int CublasLtGemm::gemv_split(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N,
                             int64_t K, cudaStream_t stream) {
  if (M <= 0 || N <= 0 || K <= 0 || !x || !w || !out)
    throw Error("gemv_split: bad operands M=" + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K));
  const int align = operands_alignment(x, w, bias, out);
  const Plan& p = plan_for({M, N, K, bias != nullptr, align, true}, Operands{x, w, bias, out, M, N, K, align, stream});
  if (p.gemv_best) return p.gemv_best;
  constexpr int64_t kWideFrom = 8192;  // past this many columns one warp per row pair fills the card
  return N <= kWideFrom ? 4 : 1;
}

void CublasLtGemm::linear(const void* x, const void* w, const void* bias, void* out, int64_t M, int64_t N,
                          int64_t K, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  if (M < 0 || N < 0 || K <= 0) throw Error("linear: bad shape M=" + std::to_string(M) + " N=" + std::to_string(N) +
                                            " K=" + std::to_string(K));
  if (!x || !w || !out) throw Error("linear: null pointer");
  const int align = operands_alignment(x, w, bias, out);
  Plan& p = plan_for({M, N, K, bias != nullptr, align, per_shape_}, Operands{x, w, bias, out, M, N, K, align, stream});
  if (p.gemv_split) {
    gpu::gemv(x, w, bias, out, M, N, K, stream, p.gemv_split);
    return;
  }
  if (bias)
    NANOVLLM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  const float one = 1.f, zero = 0.f;
  NANOVLLM_CUBLAS_CHECK(cublasLtMatmul(handle_, p.op, &one, w, p.a, x, p.b, &zero, out, p.c, out, p.c, &p.algo,
                                       workspace_, workspace_bytes_, stream));
}

}  // namespace nanovllm
