// The bench modes end to end on the CPU on a fixture model (scaled down), the roofline they
// report, their JSON, and the CPU backend's ceilings. No timing is asserted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "bench/bench_runner.h"
#include "runtime/backend.h"
#include "runtime/error.h"

namespace nanovllm::bench {
namespace {
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;
const std::string kTiny = (kFixtures / "models" / "qwen3-tied-f32-g2-d64").string();

BenchOptions small(const std::string& load_format) {
  BenchOptions o;
  o.engine.model = kTiny;
  o.engine.backend = "cpu";
  o.engine.load_format = load_format;
  o.engine.kvcache_block_size = 16;
  o.engine.num_kvcache_blocks = 128;
  o.bandwidth_gbs = 10;  // given: no measuring in these tests
  o.matmul_tflops = 0.1;
  o.throughput.num_seqs = 8;
  o.throughput.max_input_len = 64;
  o.throughput.max_output_len = 32;
  return o;
}

TEST(BenchRunner, ThroughputScaledDown) {
  for (const char* fmt : {"auto", "dummy"}) {
    SCOPED_TRACE(fmt);
    const BenchOptions o = small(fmt);
    const BenchResult r = run_throughput(o);
    const Workload w = throughput_workload(o.throughput);
    EXPECT_EQ(r.output_tokens, w.total_output_tokens());
    EXPECT_EQ(r.prompt_tokens, w.total_prompt_tokens());
    EXPECT_THAT(r.line, StartsWith("Total: " + std::to_string(w.total_output_tokens()) + "tok, Time: "));
    EXPECT_THAT(r.line, HasSubstr("tok/s"));
    EXPECT_GT(r.seconds, 0);
    // The roofline covers the timed steps only (not the warm-up): every output token but the
    // first of each request is one decode row, so there are at least max(max_tokens) steps.
    const RooflineReport& f = r.roofline;
    EXPECT_GE(f.steps, *std::max_element(w.max_tokens.begin(), w.max_tokens.end()));
    EXPECT_GT(f.floor_s, 0);
    EXPECT_LE(f.step_seconds, r.seconds * 1.0001);
    EXPECT_FALSE(f.bandwidth_measured);
    EXPECT_EQ(f.ceilings.bytes_per_s, 10e9);
    // Every prompt token and every output token but the last was run through the model once.
    const double kv_per_token = 2.0 * 2 * 2 * 64 * 4;  // layers * (K, V) * nkv * d * f32
    EXPECT_DOUBLE_EQ(f.total.kv_write_bytes, (w.total_prompt_tokens() + w.total_output_tokens() - 8) * kv_per_token);
    EXPECT_DOUBLE_EQ(f.total.lm_head_flops, 2.0 * 512 * 64 * w.total_output_tokens());
    EXPECT_THAT(f.summary, HasSubstr("of it reached"));

    const auto j = nlohmann::json::parse(result_json(r, o));
    EXPECT_EQ(j["mode"], "throughput");
    EXPECT_EQ(j["output_tokens"], w.total_output_tokens());
    EXPECT_EQ(j["workload"]["num_seqs"], 8);
    EXPECT_EQ(j["load_format"], fmt);
    EXPECT_EQ(j["roofline"]["steps"], f.steps);
    EXPECT_GT(j["roofline"]["bytes"]["kv_read"].get<double>(), 0);
  }
}

TEST(BenchRunner, Latency) {
  BenchOptions o = small("dummy");
  o.input_len = 40;
  o.output_len = 6;
  o.num_iters = 3;
  const BenchResult r = run_latency(o);
  ASSERT_EQ(r.ttft_ms.size(), 3u);
  ASSERT_EQ(r.tpot_ms.size(), 3u);
  EXPECT_GT(r.ttft_ms_median, 0);
  EXPECT_GT(r.tpot_ms_median, 0);
  EXPECT_GT(r.ttft_floor_ms, 0);
  EXPECT_GT(r.tpot_floor_ms, 0);
  EXPECT_EQ(r.output_tokens, 18);
  EXPECT_EQ(r.roofline.steps, 3 * 6);  // one prefill and five decodes per iteration
  EXPECT_THAT(r.line, HasSubstr("TTFT"));
  const auto j = nlohmann::json::parse(result_json(r, o));
  EXPECT_EQ(j["ttft_ms"].size(), 3u);
}

TEST(BenchRunner, Prefill) {
  BenchOptions o = small("dummy");
  o.num_prompts = 4;
  o.input_len = 50;
  const BenchResult r = run_prefill(o);
  EXPECT_EQ(r.prompt_tokens, 200);
  EXPECT_GT(r.tokens_per_s, 0);
  EXPECT_EQ(r.roofline.total.kv_write_bytes, 200 * 2.0 * 2 * 2 * 64 * 4);
  EXPECT_THAT(r.line, HasSubstr("Prefill: 4 prompts x 50 tokens = 200tok"));
  EXPECT_THROW(run_benchmark("decode", o), Error);
}

TEST(BenchRunner, CpuCeilingsAreMeasured) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "a GEMM of 2 GFLOP x 4 takes ~20 s under AddressSanitizer; the release build runs this";
#endif
  auto b = make_cpu_backend();
  const Ceilings c = b->measure_ceilings();
  EXPECT_GT(c.bytes_per_s, 1e8);  // sanity only: > 0.1 GB/s and > 0.1 GFLOP/s
  EXPECT_GT(c.matmul_flops_per_s, 1e8);
}

}  // namespace
}  // namespace nanovllm::bench
