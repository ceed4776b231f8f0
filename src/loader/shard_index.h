// Sharded checkpoints (model.safetensors.index.json, pytorch_model.bin.index.json) share one
// index format: {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "loader/tensor_view.h"

namespace nanovllm {

struct ShardIndex {
  std::filesystem::path index_path;
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
};

// Reads and validates an index file. Errors name the file and the problem (not JSON, no
// weight_map, a shard name that is not a plain file name inside the folder).
ShardIndex read_shard_index(const std::filesystem::path& index_path);

// Loads every shard the index names with `load_shard` and checks that each tensor the index
// lists is in the shard it names. A missing shard, or a tensor missing from its shard, is an
// Error naming both files.
TensorMap load_sharded(const ShardIndex& index,
                       const std::function<TensorMap(const std::filesystem::path&)>& load_shard);

}  // namespace nanovllm
