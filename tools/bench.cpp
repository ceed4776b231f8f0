// The `nanovllm bench` command: parses flags into bench::BenchOptions, runs the mode, prints its
// result line and roofline, and writes the JSON result with --json.
#include "bench.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "bench/bench_runner.h"
#include "bench/model_presets.h"
#include "runtime/error.h"

using namespace nanovllm;

namespace {

struct BenchFlags {
  bench::BenchOptions opts;
  std::string json_path;
};

void add_common(CLI::App* sub, BenchFlags& f) {
  std::string presets;
  for (const auto& p : bench::model_presets()) presets += (presets.empty() ? "" : ", ") + p.name;
  Config& c = f.opts.engine;
  sub->add_option("-m,--model", c.model, "Model folder, hub id, or with --load-format dummy a preset (" + presets + ")")
      ->required();
  sub->add_option("--load-format", c.load_format, "auto: the folder's weights; dummy: random weights")
      ->check(CLI::IsMember({"auto", "dummy"}));
  sub->add_option("--backend", c.backend, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--max-model-len", c.max_model_len, "Prompt + output tokens per sequence (bench.py: 4096)");
  sub->add_option("--max-num-seqs", c.max_num_seqs, "Sequences per step");
  sub->add_option("--max-num-batched-tokens", c.max_num_batched_tokens, "Tokens per step");
  sub->add_option("--gpu-memory-utilization", c.gpu_memory_utilization, "Fraction of GPU memory for the engine");
  sub->add_option("--num-kvcache-blocks", c.num_kvcache_blocks, "KV-cache blocks (-1: sized from memory)");
  sub->add_option("--cpu-kvcache-bytes", c.cpu_kvcache_bytes, "The CPU backend's KV-cache budget");
  sub->add_flag("--enforce-eager", c.enforce_eager, "No CUDA graphs");
  sub->add_option("--async-scheduling", c.async_scheduling,
                  "auto (on a GPU) / on / off: queue step n + 1 before step n's tokens reach the host")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  sub->add_option("--bandwidth-gbs", f.opts.bandwidth_gbs, "Copy bandwidth for the roofline, GB/s read + write (default: measured)");
  sub->add_option("--matmul-tflops", f.opts.matmul_tflops, "Matmul rate for the roofline, TFLOP/s (default: measured)");
  sub->add_option("--json", f.json_path, "Also write the result as JSON to this file");
}

void run(const std::string& mode, const BenchFlags& f) {
  try {
    const std::string& model = f.opts.engine.model;
    if (f.opts.engine.load_format != "dummy" && model.find('/') == std::string::npos &&
        bench::find_model_preset(model) && !std::filesystem::exists(model))
      throw Error("'" + model + "' is a built-in config without weights: run it with --load-format dummy");
    const bench::BenchResult r = bench::run_benchmark(mode, f.opts);
    std::printf("%s\n%s\n", r.line.c_str(), r.roofline.summary.c_str());
    std::fflush(stdout);
    if (!f.json_path.empty()) {
      std::ofstream out(f.json_path);
      out << bench::result_json(r, f.opts) << "\n";
      if (!out) throw Error(f.json_path + ": cannot write");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nanovllm: error: %s\n", e.what());
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks: throughput (Nano-vLLM's bench.py), latency, prefill");
  bench->require_subcommand(1);
  // The flags live as long as the app's callbacks may run.
  auto flags = std::make_shared<BenchFlags>();
  auto state = [flags](const char* mode) { return [flags, mode] { run(mode, *flags); }; };

  auto* t = bench->add_subcommand("throughput", "bench.py: 256 random prompts, 133,966 output tokens; tok/s");
  add_common(t, *flags);
  auto& spec = flags->opts.throughput;
  t->add_option("--num-seqs", spec.num_seqs, "Requests (bench.py: 256)")->check(CLI::PositiveNumber);
  t->add_option("--max-input-len", spec.max_input_len, "Longest prompt (bench.py: 1024)")->check(CLI::PositiveNumber);
  t->add_option("--max-output-len", spec.max_output_len, "Longest output (bench.py: 1024)")->check(CLI::PositiveNumber);
  t->add_option("--seed", spec.seed, "random.seed (bench.py: 0)");
  t->callback(state("throughput"));

  auto* l = bench->add_subcommand("latency", "Batch 1: time to first token and ms per output token");
  add_common(l, *flags);
  l->add_option("--input-len", flags->opts.input_len, "Prompt tokens")->check(CLI::PositiveNumber);
  l->add_option("--output-len", flags->opts.output_len, "Output tokens")->check(CLI::PositiveNumber);
  l->add_option("--num-iters", flags->opts.num_iters, "Timed iterations (median reported)")->check(CLI::PositiveNumber);
  l->add_option("--num-warmup-iters", flags->opts.num_warmup_iters, "Untimed iterations first")
      ->check(CLI::NonNegativeNumber);
  l->add_option("--seed", flags->opts.seed, "Seed of the random prompts");
  l->callback(state("latency"));

  auto* p = bench->add_subcommand("prefill", "N prompts of L tokens, one output token each: prompt tok/s");
  add_common(p, *flags);
  p->add_option("--num-prompts", flags->opts.num_prompts, "Prompts")->check(CLI::PositiveNumber);
  p->add_option("--input-len", flags->opts.input_len, "Tokens per prompt")->check(CLI::PositiveNumber);
  p->add_option("--seed", flags->opts.seed, "Seed of the random prompts");
  p->callback(state("prefill"));
}
