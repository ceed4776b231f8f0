// The Python random replica and bench.py's workload: first draws equal CPython's (computed by
// /usr/bin/python3 when it is there), and the default workload totals 133,966 output tokens.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/py_random.h"
#include "bench/workloads.h"
#include "runtime/error.h"

namespace nanovllm::bench {
namespace {

// Runs a Python snippet with the system interpreter; empty when there is none or it fails.
std::string run_python(const std::string& code) {
  const char* py = "/usr/bin/python3";
  if (!std::filesystem::exists(py)) return {};
  const auto script = std::filesystem::temp_directory_path() / ("nanovllm_bench_random_" + std::to_string(::getpid()) + ".py");
  {
    FILE* f = std::fopen(script.c_str(), "w");
    if (!f) return {};
    std::fputs(code.c_str(), f);
    std::fclose(f);
  }
  std::string out;
  if (FILE* p = ::popen((std::string(py) + " " + script.string()).c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    if (::pclose(p) != 0) out.clear();
  }
  std::filesystem::remove(script);
  return out;
}

std::vector<long long> numbers(const std::string& s) {
  std::vector<long long> v;
  std::istringstream in(s);
  long long x;
  while (in >> x) v.push_back(x);
  return v;
}

TEST(PyRandom, KnownFirstOutputsOfSeedZero) {
  // CPython: random.seed(0); [random.getrandbits(32) for _ in range(3)], random.seed(0); random.random()
  PyRandom r(0);
  EXPECT_EQ(r.next_u32(), 3626764237u);
  EXPECT_EQ(r.next_u32(), 1654615998u);
  EXPECT_EQ(r.next_u32(), 3255389356u);
  PyRandom r2(0);
  EXPECT_DOUBLE_EQ(r2.random(), 0.8444218515250481);
}

TEST(PyRandom, MatchesCPython) {
  const std::string out = run_python(R"(import random
random.seed(0)
print(*[random.getrandbits(32) for _ in range(5)])
print(*[random.randint(100, 1024) for _ in range(20)])
print(*[random.randint(0, 10000) for _ in range(20)])
print(*[random.randint(0, 1) for _ in range(20)])
print(*[random.getrandbits(k) for k in (1, 7, 31, 33, 48)])
x = random.getrandbits(64)
print(x & 0xffffffff, x >> 32)
random.seed(12345678901234)
print(*[random.randint(5, 5 + 2**40) for _ in range(5)])
random.seed(7)
print(*[int(random.random() * 2**53) for _ in range(5)])
)");
  if (out.empty()) GTEST_SKIP() << "/usr/bin/python3 is not available";
  const auto want = numbers(out);
  std::vector<long long> got;
  PyRandom r(0);
  for (int i = 0; i < 5; ++i) got.push_back(r.next_u32());
  for (int i = 0; i < 20; ++i) got.push_back(r.randint(100, 1024));
  for (int i = 0; i < 20; ++i) got.push_back(r.randint(0, 10000));
  for (int i = 0; i < 20; ++i) got.push_back(r.randint(0, 1));
  for (int k : {1, 7, 31, 33, 48}) got.push_back(static_cast<long long>(r.getrandbits(k)));
  const uint64_t x64 = r.getrandbits(64);
  got.push_back(static_cast<long long>(x64 & 0xffffffffu));
  got.push_back(static_cast<long long>(x64 >> 32));
  r.seed_int(12345678901234ULL);
  std::vector<long long> tail;
  for (int i = 0; i < 5; ++i) tail.push_back(r.randint(5, 5 + (int64_t{1} << 40)));
  r.seed_int(7);
  for (int i = 0; i < 5; ++i) tail.push_back(static_cast<long long>(r.random() * 9007199254740992.0));
  ASSERT_EQ(want.size(), got.size() + 10);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << "draw " << i;
  const std::vector<long long> want_tail(want.end() - 10, want.end());
  EXPECT_EQ(tail, want_tail);
}

TEST(BenchWorkload, DefaultIsBenchPy) {
  const Workload w = throughput_workload();
  ASSERT_EQ(w.prompts.size(), 256u);
  ASSERT_EQ(w.max_tokens.size(), 256u);
  EXPECT_EQ(w.total_output_tokens(), 133966);  // bench.py's "Total: 133966tok"
  EXPECT_EQ(w.total_prompt_tokens(), 142827);
  EXPECT_EQ(w.prompts[0].size(), 964u);
  EXPECT_EQ(w.prompts[0][0], 6311);
  EXPECT_EQ(w.max_tokens[0], 845);
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    EXPECT_GE(w.prompts[i].size(), 100u);
    EXPECT_LE(w.prompts[i].size(), 1024u);
    EXPECT_GE(w.max_tokens[i], 100);
    EXPECT_LE(w.max_tokens[i], 1024);
  }
}

TEST(BenchWorkload, MatchesBenchPyRunByPython) {
  const std::string out = run_python(R"(from random import randint, seed
seed(0)
num_seqs, max_input_len, max_ouput_len = 256, 1024, 1024
prompt_token_ids = [[randint(0, 10000) for _ in range(randint(100, max_input_len))] for _ in range(num_seqs)]
max_tokens = [randint(100, max_ouput_len) for _ in range(num_seqs)]
print(sum(max_tokens), sum(len(p) for p in prompt_token_ids), sum(sum(p) for p in prompt_token_ids))
print(*max_tokens)
print(*[len(p) for p in prompt_token_ids])
)");
  if (out.empty()) GTEST_SKIP() << "/usr/bin/python3 is not available";
  const auto want = numbers(out);
  ASSERT_EQ(want.size(), 3u + 256 + 256);
  const Workload w = throughput_workload();
  long long id_sum = 0;
  for (const auto& p : w.prompts)
    for (int32_t id : p) id_sum += id;
  EXPECT_EQ(w.total_output_tokens(), want[0]);
  EXPECT_EQ(w.total_prompt_tokens(), want[1]);
  EXPECT_EQ(id_sum, want[2]);
  for (size_t i = 0; i < 256; ++i) {
    EXPECT_EQ(w.max_tokens[i], want[3 + i]);
    EXPECT_EQ(static_cast<long long>(w.prompts[i].size()), want[3 + 256 + i]);
  }
}

TEST(BenchWorkload, ScalesDown) {
  ThroughputSpec s;
  s.num_seqs = 8;
  s.max_input_len = 64;
  s.max_output_len = 32;
  const Workload w = throughput_workload(s);
  ASSERT_EQ(w.prompts.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_GE(w.prompts[i].size(), 6u);  // a tenth of the bound below 100
    EXPECT_LE(w.prompts[i].size(), 64u);
    EXPECT_GE(w.max_tokens[i], 3);
    EXPECT_LE(w.max_tokens[i], 32);
  }
  EXPECT_EQ(bench_py_min_len(1024), 100);
  EXPECT_EQ(bench_py_min_len(100), 100);
  EXPECT_EQ(bench_py_min_len(5), 1);
  // Bounds of 100 or more keep bench.py's code exactly: the same first prompt as the default.
  s.max_input_len = 1024;
  s.max_output_len = 1024;
  EXPECT_EQ(throughput_workload(s).prompts[0], throughput_workload().prompts[0]);
  s.num_seqs = 0;
  EXPECT_THROW(throughput_workload(s), Error);
}

}  // namespace
}  // namespace nanovllm::bench
