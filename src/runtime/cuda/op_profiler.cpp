#include "runtime/cuda/op_profiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/cuda_check.h"
#include "runtime/env_switch.h"

namespace nanovllm {

bool OpProfiler::enabled_by_env() { return env_switch("NANOVLLM_PROFILE_OPS", false); }

OpProfiler::OpProfiler(cudaStream_t stream) : stream_(stream) {
  const char* v = std::getenv("NANOVLLM_PROFILE_OPS");
  steps_only_ = v && std::string(v) == "steps";
}

cudaEvent_t OpProfiler::take_event() {
  cudaEvent_t e;
  if (free_.empty()) {
    NANOVLLM_CUDA_CHECK(cudaEventCreate(&e));
  } else {
    e = free_.back();
    free_.pop_back();
  }
  used_.push_back(e);
  return e;
}

void OpProfiler::begin_step(bool decode) {
  if (capturing_) return;
  decode_ = decode;
  in_step_ = true;
  // Whether the host queues this step only after the GPU ran out of work (it then idles).
  if (steps_only_ && last_end_ && cudaEventQuery(last_end_) == cudaSuccess) ++late_[decode ? 1 : 0];
  step_begin_ = take_event();
  NANOVLLM_CUDA_CHECK(cudaEventRecord(step_begin_, stream_));
  wall_begin_ = std::chrono::steady_clock::now();
}

void OpProfiler::op_begin(const std::string& name) {
  if (capturing_ || !in_step_ || open_begin_ || steps_only_) return;  // nested ops count in their outer op
  open_name_ = name;
  open_begin_ = take_event();
  NANOVLLM_CUDA_CHECK(cudaEventRecord(open_begin_, stream_));
}

void OpProfiler::op_end() {
  if (!open_begin_) return;
  cudaEvent_t end = take_event();
  NANOVLLM_CUDA_CHECK(cudaEventRecord(end, stream_));
  pending_.push_back({open_name_, open_begin_, end});
  open_begin_ = nullptr;
}

void OpProfiler::end_step() {
  if (capturing_ || !in_step_) return;
  in_step_ = false;
  cudaEvent_t step_end = take_event();
  NANOVLLM_CUDA_CHECK(cudaEventRecord(step_end, stream_));
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_begin_).count();
  if (steps_only_) {  // read what has completed, in order, and wait for nothing
    unread_.push_back({step_begin_, step_end, decode_, wall_ms});
    last_end_ = step_end;
    while (!unread_.empty() && cudaEventQuery(unread_.front().end) == cudaSuccess) {
      const UnreadStep u = unread_.front();
      unread_.pop_front();
      add_step(u.begin, u.end, u.decode, u.wall_ms);
    }
    return;
  }
  NANOVLLM_CUDA_CHECK(cudaEventSynchronize(step_end));
  for (const Pending& p : pending_) {
    float ms = 0;
    NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, p.begin, p.end));
    Total& t = totals_[{decode_, p.name}];
    t.ms += ms;
    ++t.calls;
  }
  pending_.clear();
  add_step(step_begin_, step_end, decode_, wall_ms);
}

void OpProfiler::add_step(cudaEvent_t begin, cudaEvent_t end, bool decode, double wall_ms) {
  const int k = decode ? 1 : 0;
  float ms = 0;
  if (prev_end_) {  // from the previous step's last work to this step's first: the host's time
    NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, prev_end_, begin));
    // Gaps over 50 ms are pauses of the caller (start-up, between benchmark phases), not
    // the engine's per-step host work. A negative gap: this step was queued before the last
    // one's work was done (asynchronous scheduling), i.e. no idle time.
    if (ms < 50.f) idle_ms_[k] += std::max(ms, 0.f);
    free_.push_back(prev_end_);
  }
  NANOVLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
  step_gpu_ms_[k] += ms;
  step_wall_ms_[k] += wall_ms;
  ++steps_[k];
  // Every event of this step goes back to the free list but its end, kept as prev_end_; in
  // steps-only mode used_ also holds later steps' events, which stay.
  used_.erase(std::find(used_.begin(), used_.end(), end));
  prev_end_ = end;
  if (steps_only_) {
    used_.erase(std::find(used_.begin(), used_.end(), begin));
    free_.push_back(begin);
    return;
  }
  free_.insert(free_.end(), used_.begin(), used_.end());
  used_.clear();
}

OpProfiler::~OpProfiler() {
  if (!unread_.empty()) cudaStreamSynchronize(stream_);
  for (const UnreadStep& u : unread_) add_step(u.begin, u.end, u.decode, u.wall_ms);
  unread_.clear();
  for (int k : {1, 0}) {
    if (!steps_[k]) continue;
    double sum = 0;
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [key, t] : totals_)
      if (key.first == (k == 1)) {
        sum += t.ms;
        char line[256];
        std::snprintf(line, sizeof line, "%-40s %8ld calls %10.2f ms %6.2f us/call", key.second.c_str(), t.calls,
                      t.ms, 1e3 * t.ms / double(t.calls));
        rows.emplace_back(t.ms, line);
      }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr,
                 "[profile] %s steps: %ld; GPU span of the steps %.2f ms (ops %.2f ms, %.1f%%); host wall time of "
                 "the steps %.2f ms; GPU idle before them %.2f ms (%.2f%% of span + idle)\n",
                 k ? "decode" : "other", steps_[k], step_gpu_ms_[k], sum, 100.0 * sum / std::max(step_gpu_ms_[k], 1e-9),
                 step_wall_ms_[k], idle_ms_[k], 100.0 * idle_ms_[k] / std::max(idle_ms_[k] + step_gpu_ms_[k], 1e-9));
    if (steps_only_)
      std::fprintf(stderr, "[profile] %s steps begun after the GPU had finished the step before: %ld of %ld\n",
                   k ? "decode" : "other", late_[k], steps_[k]);
    for (const auto& [ms, line] : rows)
      std::fprintf(stderr, "[profile]   %s %5.1f%%\n", line.c_str(), 100.0 * ms / std::max(sum, 1e-9));
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
  for (cudaEvent_t e : used_) cudaEventDestroy(e);
  if (prev_end_) cudaEventDestroy(prev_end_);
}

}  // namespace nanovllm
