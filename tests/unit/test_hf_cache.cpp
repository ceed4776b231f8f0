#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "loader/hf_cache.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(HfCache, ParsesHubIds) {
  auto id = parse_hub_model_id("Qwen/Qwen3-0.6B");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->repo, "Qwen/Qwen3-0.6B");
  EXPECT_EQ(id->revision, "main");
  id = parse_hub_model_id("meta-llama/Llama-3.1-8B@v1.0");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->revision, "v1.0");
  for (const char* bad : {"", "Qwen", "a/b/c", "../x", "a/..", "a--b/c", "/abs", "a/b@../x"})
    EXPECT_FALSE(parse_hub_model_id(bad)) << bad;
}

TEST(HfCache, FindsSnapshotsThroughRefsOrCommit) {
  const fs::path cache = fs::temp_directory_path() / "nanovllm_hf_cache_test";
  fs::remove_all(cache);
  const fs::path repo = cache / "models--Qwen--Qwen3-0.6B";
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / commit);
  std::ofstream(repo / "refs" / "main") << commit;  // huggingface_hub writes no newline
  std::ofstream(repo / "snapshots" / commit / "config.json") << "{}";
  EXPECT_EQ(find_in_hf_cache({"Qwen/Qwen3-0.6B", "main"}, cache), repo / "snapshots" / commit);
  EXPECT_EQ(find_in_hf_cache({"Qwen/Qwen3-0.6B", commit}, cache), repo / "snapshots" / commit);
  EXPECT_FALSE(find_in_hf_cache({"Qwen/Qwen3-0.6B", "dev"}, cache));
  EXPECT_FALSE(find_in_hf_cache({"Qwen/Qwen3-1.7B", "main"}, cache));

  setenv("HF_HUB_CACHE", cache.c_str(), 1);
  EXPECT_EQ(resolve_model_path("Qwen/Qwen3-0.6B"), repo / "snapshots" / commit);
  setenv("HF_HUB_OFFLINE", "1", 1);  // not cached: offline, an error rather than a download
  try {
    resolve_model_path("Qwen/Qwen3-8B");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not in the Hugging Face cache at " + cache.string()));
  }
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", "/tmp/hfhome", 1);
  EXPECT_EQ(hf_hub_cache_dir(), fs::path("/tmp/hfhome/hub"));
  unsetenv("HF_HOME");
  fs::remove_all(cache);
}

}  // namespace
}  // namespace nanovllm
