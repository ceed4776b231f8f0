// What to download (plan_hub_files, shards_of_index) and the options from the environment, with
// the names and defaults huggingface_hub uses.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "loader/hub_download.h"
#include "runtime/error.h"

namespace nanovllm {

namespace {

std::string trim(std::string s) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), space));
  s.erase(std::find_if_not(s.rbegin(), s.rend(), space).base(), s.end());
  return s;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? trim(v) : std::string();
}

// huggingface_hub's boolean variables: 1, ON, YES, TRUE in any case.
bool env_flag(const char* name) {
  std::string v = env(name);
  for (char& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file name inside the repo that stays inside the snapshot folder.
bool safe_relative_path(const std::string& f) {
  if (f.empty() || f.front() == '/' || f.back() == '/' || f.find('\\') != std::string::npos ||
      f.find('\0') != std::string::npos)
    return false;
  size_t start = 0;
  while (start <= f.size()) {
    const size_t end = std::min(f.find('/', start), f.size());
    const std::string part = f.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

HubOptions HubOptions::from_env() {
  HubOptions o;
  if (std::string e = env("HF_ENDPOINT"); !e.empty()) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    o.endpoint = e;
  }
  o.token = env("HF_TOKEN");
  if (o.token.empty()) o.token = env("HUGGING_FACE_HUB_TOKEN");  // the older name
  if (o.token.empty()) {
    const std::string path = env("HF_TOKEN_PATH");
    std::ifstream in(path.empty() ? hf_home_dir() / "token" : std::filesystem::path(path));
    std::string line;
    if (in && std::getline(in, line)) o.token = trim(line);
  }
  o.offline = env_flag("HF_HUB_OFFLINE");
  o.progress = !env_flag("HF_HUB_DISABLE_PROGRESS_BARS");
  return o;
}

HubFilePlan plan_hub_files(const std::vector<std::string>& siblings, const std::string& model) {
  const std::set<std::string> have(siblings.begin(), siblings.end());
  if (!have.count("config.json"))
    throw Error("model '" + model + "' has no config.json: it is not a transformers model repo");
  HubFilePlan plan;
  plan.files.push_back("config.json");
  for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "chat_template.jinja"})
    if (have.count(f)) plan.files.push_back(f);
  // The loader reads top-level weights only; files in folders (onnx/, original/) are other formats.
  std::vector<std::string> weights;
  auto pick = [&](const std::string& index, auto is_weight) {
    if (have.count(index)) {
      plan.index = index;
      return;
    }
    for (const std::string& s : siblings)
      if (s.find('/') == std::string::npos && is_weight(s)) weights.push_back(s);
  };
  pick("model.safetensors.index.json", [](const std::string& s) { return ends_with(s, ".safetensors"); });
  if (plan.index.empty() && weights.empty())
    pick("pytorch_model.bin.index.json",
         [](const std::string& s) { return s.rfind("pytorch_model", 0) == 0 && ends_with(s, ".bin"); });
  if (plan.index.empty() && weights.empty())
    throw Error("model '" + model + "' has no weights that nanovllm loads (no *.safetensors or pytorch_model*.bin "
                "at the top of the repo)");
  if (!plan.index.empty()) plan.files.push_back(plan.index);
  std::sort(weights.begin(), weights.end());
  plan.files.insert(plan.files.end(), weights.begin(), weights.end());
  return plan;
}

std::vector<std::string> shards_of_index(const std::string& index_json, const std::string& index) {
  std::set<std::string> shards;
  try {
    const auto j = nlohmann::json::parse(index_json);
    for (const auto& [tensor, file] : j.at("weight_map").items()) {
      const std::string f = file.get<std::string>();
      if (!safe_relative_path(f)) throw Error(index + ": tensor '" + tensor + "' names a bad file '" + f + "'");
      shards.insert(f);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(index + ": not a weight index (" + std::string(e.what()) + ")");
  }
  if (shards.empty()) throw Error(index + ": the weight_map names no files");
  return {shards.begin(), shards.end()};
}

}  // namespace nanovllm
