#include "loader/shard_index.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "runtime/error.h"

namespace nanovllm {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

ShardIndex read_shard_index(const std::filesystem::path& index_path) {
  const std::string where = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw Error(where + ": cannot open the shard index");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error(where + ": not valid JSON");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(where + ": no \"weight_map\" object");
  ShardIndex idx;
  idx.index_path = index_path;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string())
      throw Error(where + ": weight_map entry for '" + name + "' is not a file name");
    const std::string f = file.get<std::string>();
    // A shard must be a file beside the index: no directories, no way out of the model folder.
    if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos ||
        f == "." || f == "..")
      throw Error(where + ": weight_map entry for '" + name + "' names '" + f +
                  "', which is not a plain file name in the model folder");
    idx.weight_map.emplace(name, f);
  }
  if (idx.weight_map.empty()) throw Error(where + ": weight_map is empty");
  return idx;
}

TensorMap load_sharded(const ShardIndex& index,
                       const std::function<TensorMap(const std::filesystem::path&)>& load_shard) {
  const auto dir = index.index_path.parent_path();
  std::set<std::string> shards;
  for (const auto& [name, file] : index.weight_map) shards.insert(file);
  TensorMap all;
  for (const auto& file : shards) {
    const auto path = dir / file;
    if (!std::filesystem::exists(path))
      throw Error(index.index_path.string() + ": names shard '" + file +
                  "', which does not exist in " + dir.string());
    TensorMap part = load_shard(path);
    for (auto& [name, view] : part) {
      auto it = index.weight_map.find(name);
      // Tensors the index does not list are still loaded: the model's name check reports them
      // as unexpected if they matter. A tensor in two shards is ambiguous, hence an error.
      if (it != index.weight_map.end() && it->second != file) continue;
      if (all.count(name))
        throw Error(path.string() + ": tensor '" + name + "' also appears in another shard");
      all.emplace(name, std::move(view));
    }
  }
  for (const auto& [name, file] : index.weight_map)
    if (!all.count(name))
      throw Error(index.index_path.string() + ": lists tensor '" + name + "' in shard '" + file +
                  "', but that shard does not contain it");
  return all;
}

}  // namespace nanovllm
