// GpuSampler: packing a SamplingBatch for kernels/cuda/sampler.h and unpacking its results.
//
// The batch travels as one block of bytes, laid out for the call's R (so a small batch copies
// little): the per-row arrays, then the CSR offsets, then the token ids. The pinned buffers come
// in two halves used in turn; a half is packed again only after its previous launch was
// collected, i.e. after its upload and its result copy have completed; so is the device copy of
// the packed batch. The results' device buffer is single (graphs read the tokens at a fixed
// address): a kernel waits for the previous launch's result copy before it overwrites them.
#include "kernels/cuda/gpu_sampler.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cuda/sampler.h"
#include "runtime/cuda_check.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

constexpr const char* kOp = "GpuSampler";

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(std::string(kOp) + ": " + what);
}

size_t align16(size_t n) { return (n + 15) / 16 * 16; }

// Byte offsets of the packed batch of R rows, H history and B banned ids.
struct InLayout {
  size_t seed, step, temperature, top_k, top_p, min_p, rep, pres, freq, num_prompt, hist_off,
      ban_off, hist_ids, ban_ids, bytes;
  InLayout(int64_t R, int64_t H, int64_t B) {
    size_t at = 0;
    auto take = [&](size_t n) {
      const size_t o = at;
      at += align16(n);
      return o;
    };
    const size_t r = static_cast<size_t>(R);
    seed = take(8 * r);
    step = take(8 * r);
    temperature = take(4 * r);
    top_k = take(4 * r);
    top_p = take(4 * r);
    min_p = take(4 * r);
    rep = take(4 * r);
    pres = take(4 * r);
    freq = take(4 * r);
    num_prompt = take(4 * r);
    hist_off = take(4 * (r + 1));
    ban_off = take(4 * (r + 1));
    hist_ids = take(4 * static_cast<size_t>(H));
    ban_ids = take(4 * static_cast<size_t>(B));
    bytes = at;
  }
};

// Byte offsets of the results of R rows with N top logprobs each.
struct OutLayout {
  size_t token, logprob, top_ids, top_lp, bytes;
  OutLayout(int64_t R, int N) {
    const size_t r = static_cast<size_t>(R), rn = r * static_cast<size_t>(N);
    token = 0;
    logprob = align16(4 * r);
    top_ids = logprob + align16(4 * r);
    top_lp = top_ids + align16(4 * rn);
    bytes = top_lp + align16(4 * rn);
  }
};

template <typename T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}
template <typename T>
const T* at(const void* base, size_t offset) {
  return reinterpret_cast<const T*>(static_cast<const char*>(base) + offset);
}

bool penalised(const SamplingBatch& b, size_t r) {
  return b.tokens[r] &&
         (b.repetition_penalty[r] != 1.f || b.presence_penalty[r] != 0.f || b.frequency_penalty[r] != 0.f);
}

// Whether row r may take the sampler's split path (greedy or temperature alone, no lists):
// only a hint that saves a launch when no row does; the kernels decide row by row.
bool may_split(const SamplingBatch& b, size_t r, int64_t V) {
  if (b.max_logprobs > 0 || b.banned[r].size() > 0 || (penalised(b, r) && !b.tokens[r]->empty())) return false;
  if (b.temperature[r] <= 0.f) return true;
  return !(b.top_k[r] > 0 && b.top_k[r] < V) && !(b.top_p[r] < 1.f) && !(b.min_p[r] > 0.f);
}

}  // namespace

GpuSampler::GpuSampler(int64_t max_rows, int64_t vocab, int64_t max_history_tokens, int max_logprobs,
                       cudaStream_t stream, int64_t max_banned_tokens)
    : max_rows_(max_rows), vocab_(vocab), max_hist_(max_history_tokens),
      max_ban_(max_banned_tokens < 0 ? 64 * std::max<int64_t>(max_rows, 0) : max_banned_tokens),
      max_logprobs_(max_logprobs), stream_(stream) {
  require(max_rows >= 1 && max_rows <= INT32_MAX, "max_rows must be in [1, 2^31), got " + std::to_string(max_rows));
  require(vocab >= 1 && vocab <= gpu::kSamplerMaxVocab,
          "vocab must be in [1, " + std::to_string(gpu::kSamplerMaxVocab) + "], got " + std::to_string(vocab));
  require(max_logprobs >= 0 && max_logprobs <= gpu::kSamplerMaxLogprobs,
          "max_logprobs must be in [0, " + std::to_string(gpu::kSamplerMaxLogprobs) + "], got " +
              std::to_string(max_logprobs));
  require(max_hist_ >= 0 && max_ban_ >= 0 && max_hist_ + max_ban_ <= INT32_MAX,
          "max_history_tokens + max_banned_tokens must be in [0, 2^31), got " + std::to_string(max_hist_) +
              " + " + std::to_string(max_ban_));
  in_bytes_ = InLayout(max_rows_, max_hist_, max_ban_).bytes;
  out_bytes_ = OutLayout(max_rows_, max_logprobs_).bytes;
  ws_bytes_ = gpu::sample_workspace_bytes(max_rows_, vocab_, max_hist_ + max_ban_);
  try {
    for (int h = 0; h < 2; ++h) {
      NANOVLLM_CUDA_CHECK(cudaMallocHost(&host_in_[h], in_bytes_));
      NANOVLLM_CUDA_CHECK(cudaMallocHost(&host_out_[h], out_bytes_));
      NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&out_ready_[h], cudaEventDisableTiming));
      NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&in_ready_[h], cudaEventDisableTiming));
      NANOVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&sampled_[h], cudaEventDisableTiming));
      NANOVLLM_CUDA_CHECK(cudaMalloc(&dev_in_[h], in_bytes_));
    }
    NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&upload_, cudaStreamNonBlocking));
    NANOVLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&download_, cudaStreamNonBlocking));
    NANOVLLM_CUDA_CHECK(cudaMalloc(&dev_out_, out_bytes_));
    NANOVLLM_CUDA_CHECK(cudaMalloc(&workspace_, ws_bytes_));
  } catch (...) {
    release();
    throw;
  }
}

GpuSampler::~GpuSampler() { release(); }

void GpuSampler::release() noexcept {
  // Copies may still be in flight on the sampler's own streams (an uncollected launch). Not
  // stream_: it is not ours, and may already be destroyed.
  for (cudaStream_t s : {upload_, download_})
    if (s) cudaStreamSynchronize(s);
  if (workspace_) cudaFree(workspace_);
  if (dev_out_) cudaFree(dev_out_);
  for (int h = 0; h < 2; ++h) {
    if (dev_in_[h]) cudaFree(dev_in_[h]);
    for (cudaEvent_t e : {out_ready_[h], in_ready_[h], sampled_[h]})
      if (e) cudaEventDestroy(e);
    if (host_out_[h]) cudaFreeHost(host_out_[h]);
    if (host_in_[h]) cudaFreeHost(host_in_[h]);
    out_ready_[h] = in_ready_[h] = sampled_[h] = nullptr;
    host_out_[h] = host_in_[h] = dev_in_[h] = nullptr;
  }
  for (cudaStream_t s : {upload_, download_})
    if (s) cudaStreamDestroy(s);
  upload_ = download_ = nullptr;
  workspace_ = dev_out_ = nullptr;
}

const int32_t* GpuSampler::device_tokens() const { return at<int32_t>(dev_out_, OutLayout(max_rows_, 0).token); }

SamplerOutput GpuSampler::sample(const void* logits, int64_t R, const SamplingBatch& b) {
  require(num_outstanding_ == 0, "sample() while a launch() is not collected");
  launch(logits, R, b);
  return collect();
}

SamplerOutput GpuSampler::collect() {
  require(num_outstanding_ > 0, "collect() without an outstanding launch()");
  const Launched l = outstanding_[0];
  outstanding_[0] = outstanding_[1];
  --num_outstanding_;
  const size_t n = static_cast<size_t>(l.R);
  const int N = l.N;
  SamplerOutput result;
  result.token.resize(n);
  result.logprob.resize(n);
  if (N > 0) result.top.resize(n);
  if (l.R == 0) return result;
  NANOVLLM_CUDA_CHECK(cudaEventSynchronize(out_ready_[l.half]));
  const void* host = host_out_[l.half];
  const OutLayout O(l.R, N);
  std::memcpy(result.token.data(), at<int32_t>(host, O.token), 4 * n);
  std::memcpy(result.logprob.data(), at<float>(host, O.logprob), 4 * n);
  if (N > 0) {
    const size_t width = static_cast<size_t>(std::min<int64_t>(N, vocab_));
    const int32_t* ids = at<int32_t>(host, O.top_ids);
    const float* lps = at<float>(host, O.top_lp);
    for (size_t r = 0; r < n; ++r) {
      auto& top = result.top[r];
      top.resize(width);
      for (size_t j = 0; j < width; ++j) top[j] = {ids[r * N + j], lps[r * N + j]};
    }
  }
  return result;
}

void GpuSampler::launch(const void* logits, int64_t R, const SamplingBatch& b) {
  require(num_outstanding_ < 2, "a third launch() before the first was collected");
  require(R >= 0 && R <= max_rows_,
          "R = " + std::to_string(R) + " rows is more than the capacity max_rows = " + std::to_string(max_rows_));
  const size_t n = static_cast<size_t>(R);
  require(b.temperature.size() == n && b.top_k.size() == n && b.top_p.size() == n && b.min_p.size() == n &&
              b.repetition_penalty.size() == n && b.presence_penalty.size() == n &&
              b.frequency_penalty.size() == n && b.seed.size() == n && b.step.size() == n &&
              b.tokens.size() == n && b.banned.size() == n,
          "the batch's vectors must have R = " + std::to_string(R) + " entries");
  require(b.max_logprobs >= 0 && b.max_logprobs <= max_logprobs_,
          "batch.max_logprobs = " + std::to_string(b.max_logprobs) + " is more than the capacity max_logprobs = " +
              std::to_string(max_logprobs_));
  const int N = b.max_logprobs;
  if (R == 0) {
    outstanding_[num_outstanding_++] = {half_, 0, N};
    return;
  }
  require(logits != nullptr, "logits is null");

  int64_t H = 0, B = 0;
  for (size_t r = 0; r < n; ++r) {
    if (penalised(b, r)) {
      require(b.num_prompt_tokens.size() == n, "batch.num_prompt_tokens must have R entries when a penalty is on");
      require(b.num_prompt_tokens[r] >= 0, "batch.num_prompt_tokens[" + std::to_string(r) + "] is negative");
      H += static_cast<int64_t>(b.tokens[r]->size());
    }
    B += static_cast<int64_t>(b.banned[r].size());
  }
  require(H <= max_hist_, "the batch's penalty history has " + std::to_string(H) +
                              " tokens, more than the capacity max_history_tokens = " + std::to_string(max_hist_));
  require(B <= max_ban_, "the batch bans " + std::to_string(B) +
                             " ids, more than the capacity max_banned_tokens = " + std::to_string(max_ban_));

  // Pack, into the half that the launch before the latest one used (collected by now).
  const int half = half_ ^ 1;
  const InLayout L(R, H, B);
  void* h = host_in_[half];
  std::memcpy(at<uint64_t>(h, L.seed), b.seed.data(), 8 * n);
  std::memcpy(at<uint64_t>(h, L.step), b.step.data(), 8 * n);
  std::memcpy(at<float>(h, L.temperature), b.temperature.data(), 4 * n);
  std::memcpy(at<int32_t>(h, L.top_k), b.top_k.data(), 4 * n);
  std::memcpy(at<float>(h, L.top_p), b.top_p.data(), 4 * n);
  std::memcpy(at<float>(h, L.min_p), b.min_p.data(), 4 * n);
  std::memcpy(at<float>(h, L.rep), b.repetition_penalty.data(), 4 * n);
  std::memcpy(at<float>(h, L.pres), b.presence_penalty.data(), 4 * n);
  std::memcpy(at<float>(h, L.freq), b.frequency_penalty.data(), 4 * n);
  int32_t* num_prompt = at<int32_t>(h, L.num_prompt);
  int32_t* hist_off = at<int32_t>(h, L.hist_off);
  int32_t* ban_off = at<int32_t>(h, L.ban_off);
  int32_t* hist_ids = at<int32_t>(h, L.hist_ids);
  int32_t* ban_ids = at<int32_t>(h, L.ban_ids);
  int32_t hn = 0, bn = 0;
  for (size_t r = 0; r < n; ++r) {
    hist_off[r] = hn;
    ban_off[r] = bn;
    num_prompt[r] = 0;
    if (penalised(b, r)) {
      const std::vector<int32_t>& t = *b.tokens[r];
      if (!t.empty()) std::memcpy(hist_ids + hn, t.data(), 4 * t.size());
      hn += static_cast<int32_t>(t.size());
      num_prompt[r] = b.num_prompt_tokens[r];
    }
    const std::vector<int32_t>& ban = b.banned[r];
    if (!ban.empty()) std::memcpy(ban_ids + bn, ban.data(), 4 * ban.size());
    bn += static_cast<int32_t>(ban.size());
  }
  hist_off[n] = hn;
  ban_off[n] = bn;

  // Upload (on upload_: this half's device copy was last read by a collected launch), sample on
  // the logits' stream once the upload and the previous launch's result copy are done (the
  // results' buffer is single), download on download_.
  NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(dev_in_[half], h, L.bytes, cudaMemcpyHostToDevice, upload_));
  NANOVLLM_CUDA_CHECK(cudaEventRecord(in_ready_[half], upload_));
  NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(stream_, in_ready_[half], 0));
  NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(stream_, out_ready_[half ^ 1], 0));  // never recorded: no wait
  void* d = dev_in_[half];
  gpu::SamplerParams p;
  p.temperature = at<float>(d, L.temperature);
  p.top_k = at<int32_t>(d, L.top_k);
  p.top_p = at<float>(d, L.top_p);
  p.min_p = at<float>(d, L.min_p);
  p.repetition_penalty = at<float>(d, L.rep);
  p.presence_penalty = at<float>(d, L.pres);
  p.frequency_penalty = at<float>(d, L.freq);
  p.seed = at<uint64_t>(d, L.seed);
  p.step = at<uint64_t>(d, L.step);
  p.split_rows = false;
  for (size_t r = 0; r < n && !p.split_rows; ++r) p.split_rows = may_split(b, r, vocab_);
  const gpu::SamplerTokenLists history{H > 0 ? at<int32_t>(d, L.hist_off) : nullptr, at<int32_t>(d, L.hist_ids)};
  const gpu::SamplerTokenLists banned{B > 0 ? at<int32_t>(d, L.ban_off) : nullptr, at<int32_t>(d, L.ban_ids)};
  const OutLayout O(R, N);
  gpu::SamplerResults out;
  out.token = at<int32_t>(dev_out_, O.token);
  out.logprob = at<float>(dev_out_, O.logprob);
  if (N > 0) {
    out.top_ids = at<int32_t>(dev_out_, O.top_ids);
    out.top_logprobs = at<float>(dev_out_, O.top_lp);
  }
  gpu::sample(logits, R, vocab_, p, history, at<int32_t>(d, L.num_prompt), banned, H + B, N, workspace_, ws_bytes_,
              out, stream_);
  NANOVLLM_CUDA_CHECK(cudaEventRecord(sampled_[half], stream_));
  NANOVLLM_CUDA_CHECK(cudaStreamWaitEvent(download_, sampled_[half], 0));
  NANOVLLM_CUDA_CHECK(cudaMemcpyAsync(host_out_[half], dev_out_, O.bytes, cudaMemcpyDeviceToHost, download_));
  NANOVLLM_CUDA_CHECK(cudaEventRecord(out_ready_[half], download_));
  half_ = half;
  outstanding_[num_outstanding_++] = {half, R, N};
}

}  // namespace nanovllm
