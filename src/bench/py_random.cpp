// MT19937 as in Matsumoto and Nishimura's reference code, which CPython's _randommodule.c
// follows; the seeding and the derived draws follow CPython 3.11/3.12's random.py.
#include "bench/py_random.h"

#include <bit>

#include "runtime/error.h"

namespace nanovllm::bench {
namespace {
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpperMask = 0x80000000u, kLowerMask = 0x7fffffffu;
}  // namespace

void PyRandom::init_genrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < kN; ++i)
    mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  mti_ = kN;
}

void PyRandom::init_by_array(const uint32_t* key, int len) {
  init_genrand(19650218u);
  int i = 1, j = 0;
  for (int k = kN > len ? kN : len; k; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
    ++i, ++j;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
    if (j >= len) j = 0;
  }
  for (int k = kN - 1; k; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
  }
  mt_[0] = 0x80000000u;  // assures a non-zero initial state
}

void PyRandom::seed_int(uint64_t seed) {
  // CPython splits abs(n) into 32-bit words, least significant first; 0 is one word.
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  init_by_array(key, key[1] ? 2 : 1);
}

void PyRandom::twist() {
  for (int k = 0; k < kN; ++k) {
    const uint32_t y = (mt_[k] & kUpperMask) | (mt_[(k + 1) % kN] & kLowerMask);
    mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
  }
  mti_ = 0;
}

uint32_t PyRandom::next_u32() {
  if (mti_ >= kN) {
    if (mti_ == kN + 1) init_genrand(5489u);  // never seeded: the reference default
    twist();
  }
  uint32_t y = mt_[mti_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint64_t PyRandom::getrandbits(int k) {
  if (k < 0 || k > 64) throw Error("PyRandom::getrandbits: k = " + std::to_string(k) + " is outside [0, 64]");
  if (k == 0) return 0;
  if (k <= 32) return next_u32() >> (32 - k);
  // Wider draws fill 32-bit words from the least significant one up; the last word keeps its
  // top (k mod 32) bits.
  const uint64_t low = next_u32();
  const uint64_t high = next_u32() >> (64 - k);
  return low | (high << 32);
}

uint64_t PyRandom::randbelow(uint64_t n) {
  if (n == 0) throw Error("PyRandom::randbelow: n must be >= 1");
  const int k = std::bit_width(n);  // n.bit_length(), not of n - 1: n may be 1
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

int64_t PyRandom::randint(int64_t a, int64_t b) {
  if (a > b) throw Error("PyRandom::randint: empty range [" + std::to_string(a) + ", " + std::to_string(b) + "]");
  const uint64_t width = static_cast<uint64_t>(b) - static_cast<uint64_t>(a) + 1;
  if (width == 0) throw Error("PyRandom::randint: the range is wider than 64 bits");
  return static_cast<int64_t>(static_cast<uint64_t>(a) + randbelow(width));
}

double PyRandom::random() {
  const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

}  // namespace nanovllm::bench
