// Python's `random` module, bit for bit, for the draws benchmarks need: the Mersenne Twister
// MT19937 seeded as random.seed(int) seeds it (init_by_array over the integer's 32-bit words),
// getrandbits, and randint through _randbelow's rejection loop, as CPython 3.11 and 3.12 do it.
// With it, `nanovllm bench throughput` draws exactly the prompts of Nano-vLLM's bench.py.
#pragma once

#include <array>
#include <cstdint>

namespace nanovllm::bench {

class PyRandom {
 public:
  // random.seed(seed) for a non-negative int (Python seeds with abs(n)).
  explicit PyRandom(uint64_t seed = 0) { seed_int(seed); }
  void seed_int(uint64_t seed);

  // The generator's next 32-bit output (genrand_uint32).
  uint32_t next_u32();
  // random.getrandbits(k), 0 <= k <= 64.
  uint64_t getrandbits(int k);
  // random._randbelow(n): uniform in [0, n), n >= 1, by rejection on bit_length(n) bits.
  uint64_t randbelow(uint64_t n);
  // random.randint(a, b): uniform in [a, b], a <= b.
  int64_t randint(int64_t a, int64_t b);
  // random.random(): 53 random bits in [0, 1).
  double random();

 private:
  static constexpr int kN = 624;
  void init_genrand(uint32_t s);
  void init_by_array(const uint32_t* key, int len);
  void twist();

  std::array<uint32_t, kN> mt_{};
  int mti_ = kN + 1;
};

}  // namespace nanovllm::bench
