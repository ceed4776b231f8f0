// Validation of the public configuration structs: every invalid value is an Error that names
// the field and the value.
#include <cmath>
#include <string>

#include "nanovllm/config.h"
#include "nanovllm/sampling_params.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
template <typename T>
[[noreturn]] void invalid(const char* owner, const char* field, T value, const char* rule) {
  std::string v;
  if constexpr (std::is_arithmetic_v<T>) v = std::to_string(value);
  else v = value;
  throw Error(std::string(owner) + "." + field + " = " + v + " is invalid: " + rule);
}
}  // namespace

void SamplingParams::validate() const {
  const char* o = "SamplingParams";
  if (!(temperature >= 0) || !std::isfinite(temperature)) invalid(o, "temperature", temperature, "must be >= 0 (0 is greedy)");
  if (top_k < -1 || top_k == 0) invalid(o, "top_k", top_k, "must be -1 (off) or >= 1");
  if (!(top_p > 0 && top_p <= 1)) invalid(o, "top_p", top_p, "must be in (0, 1]");
  if (!(min_p >= 0 && min_p <= 1)) invalid(o, "min_p", min_p, "must be in [0, 1]");
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty))
    invalid(o, "repetition_penalty", repetition_penalty, "must be > 0 (1 is off)");
  if (!(presence_penalty >= -2 && presence_penalty <= 2)) invalid(o, "presence_penalty", presence_penalty, "must be in [-2, 2]");
  if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) invalid(o, "frequency_penalty", frequency_penalty, "must be in [-2, 2]");
  if (max_tokens < 1) invalid(o, "max_tokens", max_tokens, "must be >= 1");
  if (min_tokens < 0 || min_tokens > max_tokens) invalid(o, "min_tokens", min_tokens, "must be in [0, max_tokens]");
  if (logprobs < 0 || logprobs > 20) invalid(o, "logprobs", logprobs, "must be in [0, 20]");
  for (const auto& s : stop)
    if (s.empty()) invalid(o, "stop", std::string("\"\""), "stop strings must not be empty");
}

void Config::validate() const {
  const char* o = "Config";
  if (model.empty()) invalid(o, "model", std::string("\"\""), "name a model folder");
  if (max_num_batched_tokens < 1) invalid(o, "max_num_batched_tokens", max_num_batched_tokens, "must be >= 1");
  if (max_num_seqs < 1) invalid(o, "max_num_seqs", max_num_seqs, "must be >= 1");
  if (max_model_len < 2) invalid(o, "max_model_len", max_model_len, "must be >= 2");
  if (!(gpu_memory_utilization > 0 && gpu_memory_utilization <= 1))
    invalid(o, "gpu_memory_utilization", gpu_memory_utilization, "must be in (0, 1]");
  if (tensor_parallel_size != 1) invalid(o, "tensor_parallel_size", tensor_parallel_size, "only 1 is supported so far");
  if (kvcache_block_size < 1 || kvcache_block_size > 4096)
    invalid(o, "kvcache_block_size", kvcache_block_size, "must be in [1, 4096]");
  if (num_kvcache_blocks == 0 || num_kvcache_blocks < -1)
    invalid(o, "num_kvcache_blocks", num_kvcache_blocks, "must be -1 (size from memory) or >= 1");
  if (!enable_chunked_prefill && max_num_batched_tokens < max_model_len)
    invalid(o, "max_num_batched_tokens", max_num_batched_tokens,
            "without chunked prefill it must be >= max_model_len, or a long prompt could never run");
  if (backend != "auto" && backend != "cpu" && backend != "cuda")
    invalid(o, "backend", "\"" + backend + "\"", "must be \"auto\", \"cpu\" or \"cuda\"");
  if (load_format != "auto" && load_format != "dummy")
    invalid(o, "load_format", "\"" + load_format + "\"", "must be \"auto\" or \"dummy\"");
  if (async_scheduling != "auto" && async_scheduling != "on" && async_scheduling != "off")
    invalid(o, "async_scheduling", "\"" + async_scheduling + "\"", "must be \"auto\", \"on\" or \"off\"");
}

}  // namespace nanovllm
