// The sampler's inputs for one step, one row per sequence that samples. Host-side vectors: a
// backend uploads what it needs. The random draw for a row depends only on (seed, step), so a
// seeded request samples the same tokens whatever else is in the batch, on any backend.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace nanovllm {

struct SamplingBatch {
  std::vector<float> temperature;        // 0: greedy
  std::vector<int32_t> top_k;            // -1 or 0: off
  std::vector<float> top_p, min_p;
  std::vector<float> repetition_penalty, presence_penalty, frequency_penalty;
  std::vector<uint64_t> seed;
  std::vector<uint64_t> step;            // the row's output index: the counter of its draws
  // Token history per row, for penalties: repetition uses prompt and output, presence and
  // frequency the output only.
  std::vector<const std::vector<int32_t>*> tokens;
  std::vector<int32_t> num_prompt_tokens;
  std::vector<std::vector<int32_t>> banned;  // ids that must not be sampled (EOS before min_tokens)
  int max_logprobs = 0;                  // top-N logprobs to return (max over rows)

  size_t size() const { return temperature.size(); }
};

struct SamplerOutput {
  std::vector<int32_t> token;
  std::vector<float> logprob;            // of the sampled token, under the model's raw distribution
  std::vector<std::vector<std::pair<int32_t, float>>> top;  // per row, when max_logprobs > 0
};

// A uniform draw in (0, 1) for (seed, step, index): counter-based, so any backend reproduces it.
inline double sampling_uniform(uint64_t seed, uint64_t step, uint64_t index) {
  uint64_t z = seed ^ (step * 0x9E3779B97F4A7C15ull) ^ (index * 0xC2B2AE3D27D4EB4Full);
  z += 0x9E3779B97F4A7C15ull;  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (static_cast<double>(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace nanovllm
