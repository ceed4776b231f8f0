#include "bench/workloads.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "runtime/error.h"

namespace nanovllm::bench {

int64_t Workload::total_prompt_tokens() const {
  int64_t n = 0;
  for (const auto& p : prompts) n += static_cast<int64_t>(p.size());
  return n;
}

int64_t Workload::total_output_tokens() const {
  return std::accumulate(max_tokens.begin(), max_tokens.end(), int64_t{0});
}

std::vector<int32_t> random_prompt(PyRandom& rng, int len, int max_token_id) {
  std::vector<int32_t> ids(static_cast<size_t>(len));
  for (auto& id : ids) id = static_cast<int32_t>(rng.randint(0, max_token_id));
  return ids;
}

int bench_py_min_len(int max_len) { return max_len >= 100 ? 100 : std::max(1, max_len / 10); }

Workload throughput_workload(const ThroughputSpec& s) {
  auto bad = [](const std::string& what) { throw Error("throughput workload: " + what); };
  if (s.num_seqs < 1) bad("num_seqs must be >= 1, got " + std::to_string(s.num_seqs));
  if (s.max_input_len < 1) bad("max_input_len must be >= 1, got " + std::to_string(s.max_input_len));
  if (s.max_output_len < 1) bad("max_output_len must be >= 1, got " + std::to_string(s.max_output_len));
  if (s.max_token_id < 0) bad("max_token_id must be >= 0, got " + std::to_string(s.max_token_id));
  const int min_in = s.min_input_len < 0 ? bench_py_min_len(s.max_input_len) : s.min_input_len;
  const int min_out = s.min_output_len < 0 ? bench_py_min_len(s.max_output_len) : s.min_output_len;
  if (min_in < 1 || min_in > s.max_input_len)
    bad("min_input_len " + std::to_string(min_in) + " is outside [1, max_input_len = " + std::to_string(s.max_input_len) + "]");
  if (min_out < 1 || min_out > s.max_output_len)
    bad("min_output_len " + std::to_string(min_out) + " is outside [1, max_output_len = " + std::to_string(s.max_output_len) + "]");
  PyRandom rng(s.seed);
  Workload w;
  // bench.py draws every prompt (its length, then its ids) before any max_tokens.
  for (int i = 0; i < s.num_seqs; ++i)
    w.prompts.push_back(random_prompt(rng, static_cast<int>(rng.randint(min_in, s.max_input_len)), s.max_token_id));
  for (int i = 0; i < s.num_seqs; ++i) w.max_tokens.push_back(static_cast<int>(rng.randint(min_out, s.max_output_len)));
  return w;
}

}  // namespace nanovllm::bench
