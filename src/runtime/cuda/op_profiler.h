// NANOVLLM_PROFILE_OPS=1: GPU time of every backend op, summed by op and step kind (decode or
// other), printed to stderr when the backend is destroyed. For finding where a step's time
// goes (docs/performance.md); run with enforce_eager, since ops replayed from a CUDA graph are
// not seen. Each op is bracketed by two CUDA events; step ends synchronise to read them, so a
// profiled run is slower than a plain one and only the GPU times are meaningful.
// NANOVLLM_PROFILE_OPS=steps: only each step's first and last GPU work are timed, and the events
// are read once they have completed, without waiting: the GPU's span and idle time between steps
// of an unperturbed run (a synchronising step end would undo asynchronous scheduling).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace nanovllm {

class OpProfiler {
 public:
  static bool enabled_by_env();
  explicit OpProfiler(cudaStream_t stream);
  ~OpProfiler();  // prints the table
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  void begin_step(bool decode);
  void end_step();  // synchronises, then adds this step's op times
  // Brackets one op; `name` is copied. Nothing is recorded while a graph is being captured.
  void op_begin(const std::string& name);
  void op_end();
  // Appends `suffix` to the open op's name, so this call is counted apart from the others.
  void rename_open(const std::string& suffix) {
    if (open_begin_) open_name_ += suffix;
  }
  void set_capturing(bool on) { capturing_ = on; }

 private:
  struct Pending {
    std::string name;
    cudaEvent_t begin, end;
  };
  struct Total {
    double ms = 0;
    long calls = 0;
  };
  cudaEvent_t take_event();
  // Adds one step's GPU span and the idle gap before it; gives prev_end_'s event back.
  void add_step(cudaEvent_t begin, cudaEvent_t end, bool decode, double wall_ms);
  struct UnreadStep {  // steps_only_: a step whose events may not have completed yet
    cudaEvent_t begin, end;
    bool decode;
    double wall_ms;
  };

  cudaStream_t stream_;
  bool steps_only_ = false;
  std::deque<UnreadStep> unread_;
  bool capturing_ = false, decode_ = false, in_step_ = false;
  std::vector<cudaEvent_t> free_, used_;
  std::vector<Pending> pending_;
  std::string open_name_;
  cudaEvent_t open_begin_ = nullptr;
  std::map<std::pair<bool, std::string>, Total> totals_;  // (decode, op)
  long steps_[2] = {0, 0};
  double step_gpu_ms_[2] = {0, 0}, step_wall_ms_[2] = {0, 0};
  cudaEvent_t step_begin_ = nullptr;
  cudaEvent_t prev_end_ = nullptr;  // the last step's end, kept to time the GPU's idle gap
  bool prev_decode_ = false;
  double idle_ms_[2] = {0, 0};  // GPU idle before a step of this kind, after any step
  cudaEvent_t last_end_ = nullptr;  // steps_only_: the latest step's end (maybe not read yet)
  long late_[2] = {0, 0};        // steps_only_: steps begun after the GPU had finished the last one
  std::chrono::steady_clock::time_point wall_begin_;
};

// RAII bracket; a null profiler makes it free.
class OpScope {
 public:
  OpScope(OpProfiler* p, const char* name) : p_(p) {
    if (p_) p_->op_begin(name);
  }
  OpScope(OpProfiler* p, const std::string& name) : p_(p) {
    if (p_) p_->op_begin(name);
  }
  ~OpScope() {
    if (p_) p_->op_end();
  }
  // This call is counted under its name plus `suffix` (e.g. a first call that made a GEMM plan,
  // whose timing of cuBLASLt's candidates would otherwise swell the op's average).
  void set_apart(const char* suffix) {
    if (p_) p_->rename_open(suffix);
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpProfiler* p_;
};

}  // namespace nanovllm
