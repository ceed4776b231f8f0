#include "loader/hf_cache.h"

#include <cstdlib>
#include <fstream>
#include <regex>

#include "loader/hub_download.h"
#include "runtime/error.h"

namespace nanovllm {
namespace fs = std::filesystem;

fs::path hf_home_dir() {
  if (const char* h = std::getenv("HF_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "huggingface";
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/") / ".cache" / "huggingface";
}

fs::path hf_hub_cache_dir() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  return hf_home_dir() / "hub";
}

std::string hf_repo_folder(const std::string& repo) {
  std::string folder = "models--" + repo;
  if (const size_t slash = folder.find('/'); slash != std::string::npos) folder.replace(slash, 1, "--");
  return folder;
}

std::optional<HubModelId> parse_hub_model_id(const std::string& s) {
  // The hub's own rule for repo names: letters, digits, '-', '_', '.'; no "--" or "..".
  static const std::regex re(R"(^([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([A-Za-z0-9._/-]+))?$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  const std::string repo = m[1].str() + "/" + m[2].str();
  if (repo.find("--") != std::string::npos || repo.find("..") != std::string::npos) return std::nullopt;
  const std::string rev = m[3].matched ? m[3].str() : "main";
  if (rev.find("..") != std::string::npos) return std::nullopt;
  return HubModelId{repo, rev};
}

std::optional<fs::path> find_in_hf_cache(const HubModelId& id, const fs::path& cache_dir) {
  const fs::path repo_dir = cache_dir / hf_repo_folder(id.repo);
  std::string commit = id.revision;
  // A branch or tag resolves through refs/; a commit hash names its snapshot directly.
  if (std::ifstream ref(repo_dir / "refs" / id.revision); ref) {
    std::getline(ref, commit);
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  }
  if (commit.empty() || commit.find('/') != std::string::npos) return std::nullopt;
  const fs::path snap = repo_dir / "snapshots" / commit;
  if (fs::is_directory(snap) && fs::exists(snap / "config.json")) return snap;
  return std::nullopt;
}

fs::path resolve_model_path(const std::string& model) {
  if (fs::is_directory(model)) return model;
  const auto id = parse_hub_model_id(model);
  if (!id) throw Error("model '" + model + "' is neither a folder nor a Hugging Face id (org/name[@revision])");
  const fs::path cache = hf_hub_cache_dir();
  if (auto snap = find_in_hf_cache(*id, cache)) return *snap;
  // Not a folder, not cached: download it (an Error in offline mode, naming the model).
  return download_from_hub(*id, cache, HubOptions::from_env());
}

}  // namespace nanovllm
