// The requests each benchmark mode sends, drawn with Python's generator so that the throughput
// workload is exactly Nano-vLLM's bench.py:
//
//   seed(0)
//   prompt_token_ids = [[randint(0, 10000) for _ in range(randint(100, max_input_len))]
//                       for _ in range(num_seqs)]
//   sampling_params = [SamplingParams(temperature=0.6, ignore_eos=True,
//                                     max_tokens=randint(100, max_ouput_len)) for _ in range(num_seqs)]
//
// With the defaults (256, 1024, 1024) the outputs total 133,966 tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/py_random.h"

namespace nanovllm::bench {

struct ThroughputSpec {
  int num_seqs = 256;
  int max_input_len = 1024;
  int max_output_len = 1024;
  // bench.py's lower bound of both lengths is 100; -1 means bench_py_min_len(max).
  int min_input_len = -1;
  int min_output_len = -1;
  int max_token_id = 10000;   // ids are randint(0, max_token_id)
  uint64_t seed = 0;
};

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> max_tokens;  // one per prompt
  int64_t total_prompt_tokens() const;
  int64_t total_output_tokens() const;
};

// The lower length bound for an upper bound `max_len`: bench.py's 100, or for runs scaled below
// that (CPU smoke runs), a tenth of max_len (at least 1), so lengths still vary.
int bench_py_min_len(int max_len);

// bench.py's requests, in bench.py's draw order. Error naming the field for an empty range or a
// negative max_token_id.
Workload throughput_workload(const ThroughputSpec& spec = {});

// `len` ids, each randint(0, max_token_id), drawn from `rng` (the latency and prefill modes).
std::vector<int32_t> random_prompt(PyRandom& rng, int len, int max_token_id);

}  // namespace nanovllm::bench
