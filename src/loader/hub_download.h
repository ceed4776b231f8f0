// Downloading a model from the Hugging Face hub into the local cache (hf_cache.h), in the layout
// huggingface_hub writes, so that Python tools and nanovllm share the files:
//   <cache>/models--<org>--<name>/refs/<revision>          the commit a branch or tag resolved to
//   <cache>/models--<org>--<name>/blobs/<etag>             each file once, named by its ETag
//   <cache>/models--<org>--<name>/snapshots/<commit>/<f>   relative symlinks ../../blobs/<etag>
// A file being downloaded is blobs/<etag>.incomplete and resumes with a Range request; locks are
// <cache>/.locks/models--<org>--<name>/<etag>.lock (flock, as huggingface_hub's filelock).
// snapshots/ only ever holds links to complete blobs, config.json's last: a snapshot with a
// config.json that nanovllm wrote is whole.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "loader/hf_cache.h"

namespace nanovllm {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";  // HF_ENDPOINT
  std::string token;     // HF_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token; empty: none
  bool offline = false;  // HF_HUB_OFFLINE=1: never touch the network
  bool progress = true;  // a bar on stderr when it is a terminal, else a line per file;
                         // HF_HUB_DISABLE_PROGRESS_BARS=1: nothing
  int max_resumes = 3;   // a file whose transfer breaks after some bytes resumes this many times

  static HubOptions from_env();
};

// The files of a repo (its "siblings") that nanovllm fetches: config.json, generation_config.json,
// the tokenizer's files, and the weights: model.safetensors.index.json and the shards it names
// (read from it once downloaded), else every top-level *.safetensors; without safetensors the
// same for pytorch_model.bin.index.json / pytorch_model*.bin. Throws Error naming `model` when
// the repo has no config.json or no weights.
struct HubFilePlan {
  std::vector<std::string> files;  // to download, in order
  std::string index;               // a weight index (also in `files`) whose shards come next
};
HubFilePlan plan_hub_files(const std::vector<std::string>& siblings, const std::string& model);

// The shard files an index's "weight_map" names, sorted and unique. Throws Error naming `index`.
std::vector<std::string> shards_of_index(const std::string& index_json, const std::string& index);

// Downloads what is missing of `id` into `cache_dir` and returns its snapshot folder. Errors say
// what went wrong and what to do: offline mode, no access (HF_TOKEN), no such model, revision or
// file, network failures (curl's message), a full disk, libcurl missing.
std::filesystem::path download_from_hub(const HubModelId& id, const std::filesystem::path& cache_dir,
                                        const HubOptions& options);

}  // namespace nanovllm
