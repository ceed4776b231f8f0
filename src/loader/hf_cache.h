// Finding a model by its Hugging Face id in the local cache, with the layout huggingface_hub
// writes, so that Python tools and nanovllm share files:
//   <cache>/models--<org>--<name>/refs/<revision>       a commit hash
//   <cache>/models--<org>--<name>/snapshots/<commit>/   the files
// <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. A model not in
// the cache is downloaded there (hub_download.h) unless HF_HUB_OFFLINE is set.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace nanovllm {

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (where the token is).
std::filesystem::path hf_home_dir();
std::filesystem::path hf_hub_cache_dir();

// "org/name" or "org/name@revision" (a branch, tag or commit hash; default "main").
struct HubModelId {
  std::string repo;      // "org/name"
  std::string revision;  // "main" unless given
};
std::optional<HubModelId> parse_hub_model_id(const std::string& s);

// "models--org--name": the repo's folder in the cache.
std::string hf_repo_folder(const std::string& repo);

// The snapshot folder of `id` in the cache, if it is there.
std::optional<std::filesystem::path> find_in_hf_cache(const HubModelId& id,
                                                      const std::filesystem::path& cache_dir);

// A model argument as users give it: an existing folder is used as it is; otherwise a hub id
// is looked up in the cache and, when it is not there, downloaded into it (options from the
// environment: HubOptions::from_env). Error naming where it looked when neither works.
std::filesystem::path resolve_model_path(const std::string& model);

}  // namespace nanovllm
