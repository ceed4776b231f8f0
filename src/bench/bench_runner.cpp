#include "bench/bench_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/llm_engine.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"

namespace nanovllm::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

// Prompts are drawn as bench.py draws them (ids up to 10000); a model with a smaller
// vocabulary (the test fixtures) takes them modulo its size, so the lengths stay the same.
std::vector<int32_t> fold_ids(std::vector<int32_t> ids, int vocab) {
  for (auto& id : ids) id %= vocab;
  return ids;
}

std::vector<SeqWork> works_of(const StepInfo& info) {
  std::vector<SeqWork> w;
  w.reserve(info.seqs.size());
  for (const auto& s : info.seqs) w.push_back({s.num_query_tokens, s.context_len, s.samples});
  return w;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void check_outputs(const std::vector<RequestOutput>& outs) {
  for (const auto& o : outs)
    if (o.finish_reason == "error") throw Error("bench: a request was refused: " + o.error);
}

// The engine, the ceilings and the roofline of the timed steps.
struct Session {
  explicit Session(const BenchOptions& o) : llm(o.engine.model, o.engine), engine(llm.engine()) {
    Backend& b = engine.backend();
    Ceilings c;
    if (!(o.bandwidth_gbs > 0 && o.matmul_tflops > 0)) c = b.measure_ceilings();
    report.bandwidth_measured = !(o.bandwidth_gbs > 0);
    report.matmul_measured = !(o.matmul_tflops > 0);
    if (o.bandwidth_gbs > 0) c.bytes_per_s = o.bandwidth_gbs * 1e9;
    if (o.matmul_tflops > 0) c.matmul_flops_per_s = o.matmul_tflops * 1e12;
    if (!(c.bytes_per_s > 0) || !(c.matmul_flops_per_s > 0))
      throw Error("the " + b.name() + " backend does not measure its ceilings: give --bandwidth-gbs and --matmul-tflops");
    report.ceilings = c;
    shape = model_shape(engine.model_config(), b.compute_dtype(), b.compute_dtype());
    roofline = std::make_unique<RooflineAccumulator>(shape, c);
    engine.set_step_observer([this](const StepInfo& info) {
      if (!timing) return;
      const auto w = works_of(info);
      roofline->add_step(w, info.seconds);
      if (on_step) on_step(info, w);
    });
  }
  ~Session() { engine.set_step_observer(nullptr); }

  int vocab() const { return engine.model_config().vocab_size; }

  // One short request, as bench.py's llm.generate(["Benchmark: "], SamplingParams()).
  void warm_up() {
    check_outputs(llm.generate({fold_ids({1, 2, 3}, vocab())}, SamplingParams{}));
  }

  void finish(BenchResult& r, const BenchOptions& o, const char* mode) {
    r.mode = mode;
    r.model = o.engine.model;
    r.backend = engine.backend().name();
    r.load_format = o.engine.load_format;
    r.engine_config = engine.config();
    r.num_kv_blocks = engine.num_kv_blocks();
    report.total = roofline->total();
    report.floor_s = roofline->floor_s();
    report.step_seconds = roofline->step_seconds();
    report.steps = roofline->steps();
    report.memory_bound_steps = roofline->memory_bound_steps();
    report.achieved_s = r.seconds;
    report.summary = "Roofline: " + roofline_summary(*roofline, r.seconds);
    r.roofline = report;
  }

  LLM llm;
  LLMEngine& engine;
  ModelShape shape;
  RooflineReport report;
  std::unique_ptr<RooflineAccumulator> roofline;
  bool timing = false;
  std::function<void(const StepInfo&, const std::vector<SeqWork>&)> on_step;
};

}  // namespace

BenchResult run_throughput(const BenchOptions& o) {
  const Workload w = throughput_workload(o.throughput);
  Session s(o);
  std::vector<Prompt> prompts;
  std::vector<SamplingParams> params;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    prompts.emplace_back(fold_ids(w.prompts[i], s.vocab()));
    SamplingParams p;
    p.temperature = 0.6;
    p.ignore_eos = true;
    p.max_tokens = w.max_tokens[i];
    params.push_back(p);
  }
  s.warm_up();
  s.timing = true;
  const auto t0 = Clock::now();
  const auto outs = s.llm.generate(prompts, params);
  const double secs = seconds_between(t0, Clock::now());
  s.timing = false;
  check_outputs(outs);
  BenchResult r;
  r.seconds = secs;
  r.prompt_tokens = w.total_prompt_tokens();
  r.output_tokens = w.total_output_tokens();  // what bench.py reports: the sum of max_tokens
  int64_t generated = 0;
  for (const auto& out : outs) generated += static_cast<int64_t>(out.token_ids.size());
  if (generated != r.output_tokens)
    throw Error("bench throughput: generated " + std::to_string(generated) + " tokens, expected " +
                std::to_string(r.output_tokens) + " (is max_model_len too small for the workload?)");
  r.tokens_per_s = static_cast<double>(r.output_tokens) / secs;
  r.line = format("Total: %lldtok, Time: %.2fs, Throughput: %.2ftok/s", static_cast<long long>(r.output_tokens), secs,
                  r.tokens_per_s);
  s.finish(r, o, "throughput");
  return r;
}

BenchResult run_latency(const BenchOptions& o) {
  if (o.input_len < 1 || o.output_len < 1 || o.num_iters < 1 || o.num_warmup_iters < 0)
    throw Error("bench latency: --input-len, --output-len and --num-iters must be >= 1, --num-warmup-iters >= 0");
  Session s(o);
  // Split the roofline at the first sampled token: prefill (time to first token) and decode.
  RooflineAccumulator ttft_floor(s.shape, s.report.ceilings), decode_floor(s.shape, s.report.ceilings);
  bool first_seen = false;
  Clock::time_point t_first;
  s.on_step = [&](const StepInfo& info, const std::vector<SeqWork>& w) {
    if (first_seen) {
      decode_floor.add_step(w, info.seconds);
      return;
    }
    ttft_floor.add_step(w, info.seconds);
    if (std::any_of(w.begin(), w.end(), [](const SeqWork& x) { return x.samples; })) {
      first_seen = true;
      t_first = Clock::now();
    }
  };
  SamplingParams p;
  p.temperature = 0.6;
  p.ignore_eos = true;
  p.max_tokens = o.output_len;
  PyRandom rng(o.seed);
  BenchResult r;
  for (int it = 0; it < o.num_warmup_iters + o.num_iters; ++it) {
    // A fresh prompt each time, so that no iteration is served from the prefix cache.
    const auto prompt = fold_ids(random_prompt(rng, o.input_len, 10000), s.vocab());
    s.timing = it >= o.num_warmup_iters;
    first_seen = false;
    const auto t0 = Clock::now();
    const auto outs = s.llm.generate({prompt}, p);
    const auto t1 = Clock::now();
    check_outputs(outs);
    if (!s.timing) continue;
    r.seconds += seconds_between(t0, t1);
    r.prompt_tokens += o.input_len;
    r.output_tokens += static_cast<int64_t>(outs[0].token_ids.size());
    r.ttft_ms.push_back(1e3 * seconds_between(t0, t_first));
    if (o.output_len > 1) r.tpot_ms.push_back(1e3 * seconds_between(t_first, t1) / (o.output_len - 1));
  }
  s.timing = false;
  r.ttft_ms_median = median(r.ttft_ms);
  r.tpot_ms_median = median(r.tpot_ms);
  r.ttft_floor_ms = 1e3 * ttft_floor.floor_s() / o.num_iters;
  if (o.output_len > 1) r.tpot_floor_ms = 1e3 * decode_floor.floor_s() / (static_cast<double>(o.num_iters) * (o.output_len - 1));
  r.tokens_per_s = static_cast<double>(r.output_tokens) / r.seconds;
  r.line = format("Latency (batch 1, %d prompt tokens, %d output tokens, median of %d): TTFT %.2f ms (floor %.3f ms), "
                  "%.3f ms per output token (floor %.3f ms)",
                  o.input_len, o.output_len, o.num_iters, r.ttft_ms_median, r.ttft_floor_ms, r.tpot_ms_median,
                  r.tpot_floor_ms);
  s.finish(r, o, "latency");
  return r;
}

BenchResult run_prefill(const BenchOptions& o) {
  if (o.input_len < 1 || o.num_prompts < 1) throw Error("bench prefill: --input-len and --num-prompts must be >= 1");
  Session s(o);
  PyRandom rng(o.seed);
  std::vector<Prompt> prompts;
  for (int i = 0; i < o.num_prompts; ++i) prompts.emplace_back(fold_ids(random_prompt(rng, o.input_len, 10000), s.vocab()));
  SamplingParams p;
  p.temperature = 0.6;
  p.ignore_eos = true;
  p.max_tokens = 1;
  s.warm_up();
  s.timing = true;
  const auto t0 = Clock::now();
  const auto outs = s.llm.generate(prompts, p);
  const double secs = seconds_between(t0, Clock::now());
  s.timing = false;
  check_outputs(outs);
  BenchResult r;
  r.seconds = secs;
  r.prompt_tokens = int64_t{o.num_prompts} * o.input_len;
  r.output_tokens = o.num_prompts;
  r.tokens_per_s = static_cast<double>(r.prompt_tokens) / secs;
  r.line = format("Prefill: %d prompts x %d tokens = %lldtok, Time: %.3fs, Throughput: %.2f prompt tok/s", o.num_prompts,
                  o.input_len, static_cast<long long>(r.prompt_tokens), secs, r.tokens_per_s);
  s.finish(r, o, "prefill");
  return r;
}

BenchResult run_benchmark(const std::string& mode, const BenchOptions& o) {
  if (mode == "throughput") return run_throughput(o);
  if (mode == "latency") return run_latency(o);
  if (mode == "prefill") return run_prefill(o);
  throw Error("bench: unknown mode '" + mode + "' (throughput, latency or prefill)");
}

std::string result_json(const BenchResult& r, const BenchOptions& o) {
  using nlohmann::ordered_json;
  const RooflineReport& f = r.roofline;
  const StepCost& t = f.total;
  ordered_json j;
  j["mode"] = r.mode;
  j["line"] = r.line;
  j["model"] = r.model;
  j["backend"] = r.backend;
  j["load_format"] = r.load_format;
  const Config& c = r.engine_config;
  j["config"] = {{"max_model_len", c.max_model_len},
                 {"max_num_seqs", c.max_num_seqs},
                 {"max_num_batched_tokens", c.max_num_batched_tokens},
                 {"kvcache_block_size", c.kvcache_block_size},
                 {"num_kv_blocks", r.num_kv_blocks},
                 {"enforce_eager", c.enforce_eager},
                 {"enable_prefix_caching", c.enable_prefix_caching}};
  if (r.mode == "throughput")
    j["workload"] = {{"num_seqs", o.throughput.num_seqs},
                     {"max_input_len", o.throughput.max_input_len},
                     {"max_output_len", o.throughput.max_output_len},
                     {"seed", o.throughput.seed}};
  else
    j["workload"] = {{"input_len", o.input_len},
                     {"output_len", r.mode == "latency" ? o.output_len : 1},
                     {"num_prompts", r.mode == "prefill" ? o.num_prompts : 1},
                     {"num_iters", r.mode == "latency" ? o.num_iters : 1},
                     {"seed", o.seed}};
  j["seconds"] = r.seconds;
  j["prompt_tokens"] = r.prompt_tokens;
  j["output_tokens"] = r.output_tokens;
  j["tokens_per_s"] = r.tokens_per_s;
  if (r.mode == "latency") {
    j["ttft_ms"] = r.ttft_ms;
    j["tpot_ms"] = r.tpot_ms;
    j["ttft_ms_median"] = r.ttft_ms_median;
    j["tpot_ms_median"] = r.tpot_ms_median;
    j["ttft_floor_ms"] = r.ttft_floor_ms;
    j["tpot_floor_ms"] = r.tpot_floor_ms;
  }
  j["roofline"] = {
      {"bandwidth_bytes_per_s", f.ceilings.bytes_per_s},
      {"bandwidth_measured", f.bandwidth_measured},
      {"matmul_flops_per_s", f.ceilings.matmul_flops_per_s},
      {"matmul_measured", f.matmul_measured},
      {"steps", f.steps},
      {"memory_bound_steps", f.memory_bound_steps},
      {"bytes", {{"total", t.bytes()}, {"weights", t.weight_bytes}, {"kv_read", t.kv_read_bytes},
                 {"kv_written", t.kv_write_bytes}, {"logits", t.logits_bytes}}},
      {"flops", {{"total", t.flops()}, {"linear", t.linear_flops}, {"lm_head", t.lm_head_flops},
                 {"attention", t.attention_flops}}},
      {"floor_s", f.floor_s},
      {"step_seconds", f.step_seconds},
      {"achieved_s", f.achieved_s},
      {"achieved_over_floor", f.floor_s > 0 ? f.achieved_s / f.floor_s : 0.0},
      {"fraction_of_floor", f.achieved_s > 0 ? f.floor_s / f.achieved_s : 0.0},
  };
  return j.dump(2);
}

}  // namespace nanovllm::bench
