// The benchmark modes behind `nanovllm bench`, as library functions (the command parses flags and
// prints; tests call these directly):
//   throughput  Nano-vLLM's bench.py: 256 random prompts of 100..1024 tokens, 100..1024 output
//               tokens each (133,966 in all), temperature 0.6, ignore_eos; output tokens / s.
//   latency     one request at a time: time to first token for --input-len prompt tokens, then
//               ms per output token; median over iterations after warm-up.
//   prefill     N prompts of L tokens, max_tokens 1: prompt tokens / s.
// Every mode also reports its roofline (src/bench/roofline.h) over the steps it timed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/roofline.h"
#include "bench/workloads.h"
#include "nanovllm/config.h"

namespace nanovllm::bench {

struct BenchOptions {
  Config engine;               // model (folder, hub id or preset), backend, load_format, limits
  double bandwidth_gbs = 0;    // > 0: this copy bandwidth (GB/s, read + write) instead of measuring
  double matmul_tflops = 0;    // > 0: this matmul rate instead of measuring
  ThroughputSpec throughput;   // throughput mode
  int input_len = 512;         // latency and prefill: prompt tokens
  int output_len = 128;        // latency: output tokens
  int num_iters = 5;           // latency: timed iterations (median reported)
  int num_warmup_iters = 1;    // latency: untimed iterations first
  int num_prompts = 32;        // prefill
  uint64_t seed = 0;           // latency and prefill prompts (Python's generator, like throughput)

  BenchOptions() { engine.max_model_len = 4096; }  // bench.py's
};

struct RooflineReport {
  Ceilings ceilings;
  bool bandwidth_measured = false, matmul_measured = false;
  StepCost total;              // summed over the timed steps
  double floor_s = 0;          // sum over the timed steps of max(bytes / bandwidth, FLOPs / rate)
  double step_seconds = 0;     // the engine's own timing of those steps
  int64_t steps = 0, memory_bound_steps = 0;
  double achieved_s = 0;       // the timed region
  std::string summary;         // one line
};

struct BenchResult {
  std::string mode, model, backend, load_format;
  std::string line;            // the mode's result line (bench.py's format for throughput)
  double seconds = 0;          // the timed region
  int64_t prompt_tokens = 0, output_tokens = 0;
  double tokens_per_s = 0;     // throughput: output tokens / s; prefill: prompt tokens / s
  // latency: per timed iteration, and medians; the floors are the roofline's for the same steps.
  std::vector<double> ttft_ms, tpot_ms;
  double ttft_ms_median = 0, tpot_ms_median = 0, ttft_floor_ms = 0, tpot_floor_ms = 0;
  Config engine_config;         // as the engine ran it (max_model_len capped by the model, ...)
  int num_kv_blocks = 0;
  RooflineReport roofline;
};

BenchResult run_throughput(const BenchOptions& opts);
BenchResult run_latency(const BenchOptions& opts);
BenchResult run_prefill(const BenchOptions& opts);
// By mode name; Error for an unknown one.
BenchResult run_benchmark(const std::string& mode, const BenchOptions& opts);

// The result, the options that produced it and the roofline, as one JSON object.
std::string result_json(const BenchResult& result, const BenchOptions& opts);

}  // namespace nanovllm::bench
