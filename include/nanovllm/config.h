// The engine's configuration, after Nano-vLLM's Config (same names and, where they make sense
// on every backend, the same defaults).
#pragma once

#include <cstdint>
#include <string>

namespace nanovllm {

struct Config {
  std::string model;                   // a model folder
  int max_num_batched_tokens = 16384;  // tokens in one step (prefill chunks + decodes)
  int max_num_seqs = 512;              // sequences in one step
  int max_model_len = 4096;            // prompt + output; capped at max_position_embeddings
  double gpu_memory_utilization = 0.9; // fraction of device memory the engine may use
  int tensor_parallel_size = 1;
  bool enforce_eager = false;          // no CUDA graphs
  int kvcache_block_size = 256;        // tokens per KV-cache block
  int num_kvcache_blocks = -1;         // -1: sized from memory (CPU: from cpu_kvcache_bytes)
  bool enable_prefix_caching = true;
  bool enable_chunked_prefill = true;  // split long prompts across steps
  int64_t cpu_kvcache_bytes = int64_t{1} << 30;  // the CPU backend's KV budget when sizing
  // "auto": CUDA when this build has it and a GPU is present, else the CPU. "cpu" or "cuda".
  std::string backend = "auto";
  // "auto": the weights in the model folder. "dummy": random weights for config.json alone (or a
  // built-in preset's config), as vLLM's load_format="dummy": for benchmarks, no weight files.
  std::string load_format = "auto";
  // Asynchronous scheduling: the engine queues step n + 1 before step n's sampled tokens reach
  // the host (they go into step n + 1's inputs on the device), so the host's scheduling and
  // output handling run while the GPU computes. A sequence that stops on a sampled token (EOS,
  // a stop id or string) has then been given one more step, whose token is dropped. "auto": on
  // where the backend runs on a device (a host backend computes as it is called and gains
  // nothing); "on"; "off": every step waits for its tokens.
  std::string async_scheduling = "auto";

  // Throws nanovllm::Error naming the first invalid field.
  void validate() const;
};

}  // namespace nanovllm
