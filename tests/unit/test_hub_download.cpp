// Downloads from the Hugging Face hub, against an in-process server on 127.0.0.1 (cpp-httplib)
// that speaks the hub's URL scheme: the listing API, resolve URLs answered with ETags and
// X-Repo-Commit (LFS files by a 302 to a CDN path with X-Linked-Etag/-Size), and Range requests.
// It serves the fixture model folders, so the downloaded models also run in the engine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "loader/curl_api.h"
#include "loader/hf_cache.h"
#include "loader/hub_download.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const fs::path kModels = fs::path(NANOVLLM_FIXTURES_DIR) / "models";
const std::string kMain = "1111111111111111111111111111111111111111";
const std::string kV1 = "2222222222222222222222222222222222222222";

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct HubFile {
  std::string content, etag;
  bool lfs = false;  // served by a redirect to the CDN, as git-LFS files are
};

struct HubRepo {
  std::map<std::string, std::string> refs;                          // branch or tag -> commit
  std::map<std::string, std::map<std::string, HubFile>> commits;    // commit -> files
  bool gated = false;                                               // files need the token
};

HubFile make_file(const std::string& content, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: a stand-in for the hub's sha256 / git-sha1 ETags
  for (unsigned char c : content) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  const bool lfs = name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos;
  return {content, std::string(buf) + (lfs ? "00" : "01"), lfs};
}

// The files of a fixture folder plus `extra` files the downloader must leave alone.
std::map<std::string, HubFile> fixture_files(const std::string& folder, const std::vector<std::string>& extra) {
  std::map<std::string, HubFile> files;
  for (const auto& e : fs::directory_iterator(kModels / folder)) {
    const std::string name = e.path().filename().string();
    files[name] = make_file(read_bytes(e.path()), name);
  }
  for (const std::string& name : extra) files[name] = make_file("not for nanovllm: " + name, name);
  return files;
}

struct Logged {
  std::string method, path, range, auth;
};

class FakeHub {
 public:
  FakeHub() {
    srv_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
      std::lock_guard<std::mutex> lock(mu_);
      log_.push_back({req.method, req.path, req.get_header_value("Range"), req.get_header_value("Authorization")});
      return httplib::Server::HandlerResponse::Unhandled;
    });
    srv_.Get(R"(/api/models/([^/]+/[^/]+)/revision/(.+))",
             [this](const httplib::Request& req, httplib::Response& res) { listing(req, res); });
    srv_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))",
             [this](const httplib::Request& req, httplib::Response& res) { resolve(req, res); });
    srv_.Get(R"(/cdn/([0-9a-f]+))", [this](const httplib::Request& req, httplib::Response& res) { cdn(req, res); });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) std::this_thread::yield();  // stop() before this would be lost
  }
  ~FakeHub() {
    srv_.stop();
    thread_.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void add(const std::string& name, HubRepo repo) { repos_[name] = std::move(repo); }
  std::vector<Logged> log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard<std::mutex> lock(mu_);
    log_.clear();
    cdn_sent_.clear();
  }
  // Bytes each CDN request was answered with, per ETag.
  std::vector<std::pair<std::string, size_t>> cdn_sent() {
    std::lock_guard<std::mutex> lock(mu_);
    return cdn_sent_;
  }
  void interrupt_once(const std::string& etag) {
    std::lock_guard<std::mutex> lock(mu_);
    interrupt_.insert(etag);
  }
  std::atomic<bool> ignore_range{false};  // answer Range requests with the whole file (200)
  std::string token = "secret";           // what gated repos accept

 private:
  httplib::Server srv_;
  std::thread thread_;
  int port_ = 0;
  std::map<std::string, HubRepo> repos_;  // set before requests are made
  std::mutex mu_;
  std::vector<Logged> log_;
  std::vector<std::pair<std::string, size_t>> cdn_sent_;
  std::set<std::string> interrupt_;

  static void error(httplib::Response& res, int status, const std::string& code, const std::string& msg) {
    res.status = status;
    res.set_header("X-Error-Code", code);
    res.set_header("X-Error-Message", msg);
  }
  const std::map<std::string, HubFile>* files_of(const std::string& repo, const std::string& rev, std::string& commit) {
    const HubRepo& r = repos_.at(repo);
    commit = r.refs.count(rev) ? r.refs.at(rev) : rev;
    return r.commits.count(commit) ? &r.commits.at(commit) : nullptr;
  }

  void listing(const httplib::Request& req, httplib::Response& res) {
    const std::string repo = req.matches[1], rev = req.matches[2];
    if (!repos_.count(repo)) return error(res, 404, "RepoNotFound", "Repository Not Found for url");
    std::string commit;
    const auto* files = files_of(repo, rev, commit);
    if (!files) return error(res, 404, "RevisionNotFound", "Invalid rev id: " + rev);
    nlohmann::json j = {{"id", repo}, {"sha", commit}, {"siblings", nlohmann::json::array()}};
    for (const auto& [name, f] : *files) j["siblings"].push_back({{"rfilename", name}});
    res.set_content(j.dump(), "application/json");
  }

  void resolve(const httplib::Request& req, httplib::Response& res) {
    const std::string repo = req.matches[1], rev = req.matches[2], name = req.matches[3];
    if (!repos_.count(repo)) return error(res, 404, "RepoNotFound", "Repository Not Found");
    if (repos_.at(repo).gated && req.get_header_value("Authorization") != "Bearer " + token)
      return error(res, 401, "GatedRepo", "Access to model " + repo + " is restricted.");
    std::string commit;
    const auto* files = files_of(repo, rev, commit);
    if (!files) return error(res, 404, "RevisionNotFound", "Invalid rev id: " + rev);
    if (!files->count(name)) return error(res, 404, "EntryNotFound", name + " does not exist");
    const HubFile& f = files->at(name);
    res.set_header("X-Repo-Commit", commit);
    if (f.lfs) {
      res.status = 302;
      res.set_header("Location", endpoint() + "/cdn/" + f.etag);
      res.set_header("X-Linked-Etag", "\"" + f.etag + "\"");
      res.set_header("X-Linked-Size", std::to_string(f.content.size()));
    } else {
      res.set_header("ETag", "W/\"" + f.etag + "\"");
      res.set_content(f.content, "application/octet-stream");  // httplib answers Range with 206
    }
  }

  void cdn(const httplib::Request& req, httplib::Response& res) {
    const HubFile* f = nullptr;
    for (const auto& [_, repo] : repos_)
      for (const auto& [__, files] : repo.commits)
        for (const auto& [___, file] : files)
          if (file.etag == req.matches[1]) f = &file;
    if (!f) return error(res, 404, "EntryNotFound", "no such blob");
    std::lock_guard<std::mutex> lock(mu_);
    const size_t size = f->content.size();
    if (interrupt_.erase(f->etag)) {  // half of the file, then the connection drops
      cdn_sent_.emplace_back(f->etag, size / 2);
      res.set_content_provider(size, "application/octet-stream", [f, size](size_t off, size_t, httplib::DataSink& sink) {
        if (off >= size / 2) return false;
        sink.write(f->content.data() + off, size / 2 - off);
        return true;
      });
    } else if (ignore_range && !req.ranges.empty()) {  // a server without ranges: 200, everything
      cdn_sent_.emplace_back(f->etag, size);
      res.status = 200;
      res.set_chunked_content_provider("application/octet-stream", [f](size_t, httplib::DataSink& sink) {
        sink.write(f->content.data(), f->content.size());
        sink.done();
        return true;
      });
    } else {
      const size_t start = req.ranges.empty() ? 0 : static_cast<size_t>(req.ranges[0].first);
      cdn_sent_.emplace_back(f->etag, size - std::min(start, size));
      res.set_content(f->content, "application/octet-stream");  // httplib answers Range with 206
    }
  }
};

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() /
            ("nanovllm_hub_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(home_);
    fs::create_directories(home_);
    for (const char* v : {"HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                          "HF_TOKEN_PATH", "HF_HUB_OFFLINE"}) {
      if (const char* old = std::getenv(v)) saved_[v] = old;
      unsetenv(v);
    }
    setenv("HF_HOME", home_.c_str(), 1);
    setenv("HF_ENDPOINT", hub_.endpoint().c_str(), 1);
    HubRepo tiny;
    tiny.refs = {{"main", kMain}, {"v1.0", kV1}};
    tiny.commits[kMain] = fixture_files("qwen3-tied-f32-g2-d64",
                                        {"README.md", ".gitattributes", "onnx/model.safetensors", "training_args.bin"});
    tiny.commits[kV1] = tiny.commits[kMain];
    tiny.commits[kV1]["generation_config.json"] = make_file(R"({"eos_token_id": 7})", "generation_config.json");
    hub_.add("tiny/qwen3", tiny);
    HubRepo gated = tiny;
    gated.gated = true;
    hub_.add("tiny/gated", gated);
    HubRepo bin;
    bin.refs = {{"main", kMain}};
    bin.commits[kMain] = fixture_files("qwen3-untied-f32-g4-d64-bin", {"training_args.bin", "flax_model.msgpack"});
    hub_.add("tiny/qwen3-bin", bin);
    HubRepo sharded;
    sharded.refs = {{"main", kMain}};
    sharded.commits[kMain] = fixture_files("qwen3-untied-f32-g1-d128-sharded", {"consolidated.safetensors"});
    hub_.add("tiny/qwen3-sharded", sharded);
  }
  void TearDown() override {
    for (const char* v : {"HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                          "HF_TOKEN_PATH", "HF_HUB_OFFLINE"}) {
      if (saved_.count(v)) setenv(v, saved_[v].c_str(), 1);
      else unsetenv(v);
    }
    fs::remove_all(home_);
  }

  fs::path cache() const { return home_ / "hub"; }
  fs::path repo_dir(const std::string& folder) const { return cache() / folder; }
  static std::string etag_of(const std::string& folder, const std::string& file) {
    return make_file(read_bytes(kModels / folder / file), file).etag;
  }
  static std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
  }
  // Every fixture file is in the snapshot, byte for byte, as a relative link to its blob.
  void expect_snapshot_of(const fs::path& snap, const std::string& folder) {
    std::set<std::string> expected;
    for (const auto& e : fs::directory_iterator(kModels / folder)) {
      const std::string name = e.path().filename().string();
      expected.insert(name);
      const fs::path link = snap / name;
      ASSERT_TRUE(fs::is_symlink(fs::symlink_status(link))) << link;
      EXPECT_EQ(fs::read_symlink(link), fs::path("../../blobs") / etag_of(folder, name)) << name;
      EXPECT_EQ(read_bytes(link), read_bytes(e.path())) << name;
    }
    EXPECT_EQ(names_in(snap), expected);
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
  }
  static HubOptions no_resume() {
    HubOptions o = HubOptions::from_env();
    o.max_resumes = 0;
    return o;
  }

  FakeHub hub_;
  fs::path home_;
  std::map<std::string, std::string> saved_;
};

TEST_F(HubDownload, FullDownloadThenTheCacheLayoutAndNoRequestTheSecondTime) {
  const fs::path snap = resolve_model_path("tiny/qwen3");
  const fs::path repo = repo_dir("models--tiny--qwen3");
  EXPECT_EQ(snap, repo / "snapshots" / kMain);
  EXPECT_EQ(read_bytes(repo / "refs" / "main"), kMain);
  expect_snapshot_of(snap, "qwen3-tied-f32-g2-d64");
  std::set<std::string> etags;
  for (const auto& e : fs::directory_iterator(kModels / "qwen3-tied-f32-g2-d64"))
    etags.insert(etag_of("qwen3-tied-f32-g2-d64", e.path().filename().string()));
  EXPECT_EQ(names_in(repo / "blobs"), etags);  // no .incomplete left, nothing else fetched
  EXPECT_TRUE(fs::exists(cache() / ".locks" / "models--tiny--qwen3"));

  hub_.clear_log();
  EXPECT_EQ(resolve_model_path("tiny/qwen3"), snap);
  EXPECT_TRUE(hub_.log().empty());
}

TEST_F(HubDownload, InterruptedDownloadResumesWithRangeOnTheNextCall) {
  const std::string etag = etag_of("qwen3-tied-f32-g2-d64", "model.safetensors");
  const size_t size = fs::file_size(kModels / "qwen3-tied-f32-g2-d64" / "model.safetensors");
  hub_.interrupt_once(etag);
  const HubModelId id{"tiny/qwen3", "main"};
  EXPECT_THAT(error_of([&] { download_from_hub(id, cache(), no_resume()); }),
              AllOf(HasSubstr("curl error"), HasSubstr("tiny/qwen3"), HasSubstr("next attempt resumes")));
  const fs::path repo = repo_dir("models--tiny--qwen3");
  const fs::path part = repo / "blobs" / (etag + ".incomplete");
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), size / 2);
  EXPECT_FALSE(find_in_hf_cache(id, cache()));  // nothing half-done is visible in snapshots/
  EXPECT_FALSE(fs::exists(repo / "snapshots" / kMain / "model.safetensors"));

  hub_.clear_log();
  const fs::path snap = download_from_hub(id, cache(), no_resume());
  expect_snapshot_of(snap, "qwen3-tied-f32-g2-d64");
  bool resumed = false;
  for (const Logged& l : hub_.log())
    if (l.path == "/cdn/" + etag) resumed = l.range == "bytes=" + std::to_string(size / 2) + "-";
  EXPECT_TRUE(resumed);
  const std::vector<std::pair<std::string, size_t>> sent = {{etag, size - size / 2}};
  EXPECT_EQ(hub_.cdn_sent(), sent);  // only the remainder, and no other blob again
}

TEST_F(HubDownload, BrokenTransferResumesWithinOneCall) {
  const std::string etag = etag_of("qwen3-tied-f32-g2-d64", "model.safetensors");
  hub_.interrupt_once(etag);
  expect_snapshot_of(resolve_model_path("tiny/qwen3"), "qwen3-tied-f32-g2-d64");
  EXPECT_EQ(hub_.cdn_sent().size(), 2u);  // half, then the rest
}

TEST_F(HubDownload, ServerIgnoringRangeRestartsTheFile) {
  const std::string etag = etag_of("qwen3-tied-f32-g2-d64", "model.safetensors");
  hub_.interrupt_once(etag);
  const HubModelId id{"tiny/qwen3", "main"};
  EXPECT_THROW(download_from_hub(id, cache(), no_resume()), Error);
  hub_.ignore_range = true;
  hub_.clear_log();
  expect_snapshot_of(download_from_hub(id, cache(), no_resume()), "qwen3-tied-f32-g2-d64");
  const size_t size = fs::file_size(kModels / "qwen3-tied-f32-g2-d64" / "model.safetensors");
  const std::vector<std::pair<std::string, size_t>> sent = {{etag, size}};
  EXPECT_EQ(hub_.cdn_sent(), sent);
}

TEST_F(HubDownload, TokenIsSentAsBearerAndItsAbsenceExplained) {
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/gated"); }),
              AllOf(HasSubstr("tiny/gated"), HasSubstr("HTTP 401"), HasSubstr("gated or private"),
                    HasSubstr("HF_TOKEN"), HasSubstr("no token was sent")));
  setenv("HF_TOKEN", "wrong", 1);
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/gated"); }), HasSubstr("the token that was sent was refused"));
  setenv("HF_TOKEN", "secret", 1);
  hub_.clear_log();
  expect_snapshot_of(resolve_model_path("tiny/gated"), "qwen3-tied-f32-g2-d64");
  for (const Logged& l : hub_.log()) {
    if (l.path.find("/resolve/") != std::string::npos || l.path.rfind("/api/", 0) == 0) {
      EXPECT_EQ(l.auth, "Bearer secret") << l.path;
    }
  }
}

TEST_F(HubDownload, TokenFileInHfHome) {
  std::ofstream(home_ / "token") << "secret\n";
  expect_snapshot_of(resolve_model_path("tiny/gated"), "qwen3-tied-f32-g2-d64");
}

TEST_F(HubDownload, NoSuchModelRevisionOrNetwork) {
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/nope"); }),
              AllOf(HasSubstr("model 'tiny/nope' was not found on " + hub_.endpoint()), HasSubstr("404")));
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/qwen3@nope"); }),
              AllOf(HasSubstr("revision 'nope' of model 'tiny/qwen3' was not found"), HasSubstr("404")));
  setenv("HF_ENDPOINT", "http://127.0.0.1:1", 1);  // nothing listens on port 1
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/qwen3"); }),
              AllOf(HasSubstr("cannot download model 'tiny/qwen3' from http://127.0.0.1:1"),
                    HasSubstr("curl error 7"), HasSubstr("HF_HUB_OFFLINE")));
  EXPECT_FALSE(fs::exists(repo_dir("models--tiny--qwen3") / "snapshots"));
}

TEST_F(HubDownload, OfflineModeUsesOnlyTheCache) {
  setenv("HF_HUB_OFFLINE", "1", 1);
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/qwen3"); }),
              AllOf(HasSubstr("offline"), HasSubstr("tiny/qwen3"), HasSubstr("HF_HUB_OFFLINE")));
  EXPECT_TRUE(hub_.log().empty());
  unsetenv("HF_HUB_OFFLINE");
  const fs::path snap = resolve_model_path("tiny/qwen3");
  setenv("HF_HUB_OFFLINE", "1", 1);
  hub_.clear_log();
  EXPECT_EQ(resolve_model_path("tiny/qwen3"), snap);
  EXPECT_TRUE(hub_.log().empty());
}

TEST_F(HubDownload, RevisionOtherThanMainSharesBlobs) {
  const fs::path main = resolve_model_path("tiny/qwen3");
  const fs::path v1 = resolve_model_path("tiny/qwen3@v1.0");
  const fs::path repo = repo_dir("models--tiny--qwen3");
  EXPECT_EQ(v1, repo / "snapshots" / kV1);
  EXPECT_EQ(read_bytes(repo / "refs" / "v1.0"), kV1);
  EXPECT_EQ(read_bytes(v1 / "generation_config.json"), R"({"eos_token_id": 7})");
  EXPECT_EQ(fs::read_symlink(v1 / "model.safetensors"), fs::read_symlink(main / "model.safetensors"));
  EXPECT_EQ(names_in(repo / "blobs").size(), names_in(main).size() + 1);  // one new blob
  // A commit hash is its own snapshot; no ref is written for it.
  fs::remove_all(repo / "snapshots" / kMain);
  EXPECT_EQ(resolve_model_path("tiny/qwen3@" + kMain), repo / "snapshots" / kMain);
  EXPECT_FALSE(fs::exists(repo / "refs" / kMain));
}

TEST_F(HubDownload, BinOnlyRepoGetsPytorchModelBin) {
  const fs::path snap = resolve_model_path("tiny/qwen3-bin");
  expect_snapshot_of(snap, "qwen3-untied-f32-g4-d64-bin");  // and not training_args.bin
}

TEST_F(HubDownload, ShardedRepoGetsTheShardsItsIndexNames) {
  expect_snapshot_of(resolve_model_path("tiny/qwen3-sharded"), "qwen3-untied-f32-g1-d128-sharded");
}

TEST_F(HubDownload, DiskFullIsReportedAndNothingIsLinked) {
  const std::string etag = etag_of("qwen3-tied-f32-g2-d64", "model.safetensors");
  const fs::path blobs = repo_dir("models--tiny--qwen3") / "blobs";
  fs::create_directories(blobs);
  fs::create_symlink("/dev/full", blobs / (etag + ".incomplete"));  // every write: ENOSPC
  EXPECT_THAT(error_of([] { resolve_model_path("tiny/qwen3"); }),
              AllOf(HasSubstr("No space left on device"), HasSubstr("the disk is full")));
  EXPECT_FALSE(fs::exists(repo_dir("models--tiny--qwen3") / "snapshots"));
}

TEST_F(HubDownload, DownloadedModelGeneratesLikeTheFixtureFolder) {
  Config c;
  c.backend = "cpu";
  c.kvcache_block_size = 16;
  c.num_kvcache_blocks = 64;
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 12;
  const std::vector<Prompt> prompts = {std::vector<int32_t>{1, 17, 42, 99}, std::vector<int32_t>{5, 6, 7}};
  LLM from_hub("tiny/qwen3", c);
  LLM from_folder((kModels / "qwen3-tied-f32-g2-d64").string(), c);
  const auto a = from_hub.generate(prompts, p), b = from_folder.generate(prompts, p);
  ASSERT_EQ(a.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_FALSE(a[i].token_ids.empty());
    EXPECT_EQ(a[i].token_ids, b[i].token_ids) << "prompt " << i;
  }
}

TEST(HubFiles, ChoosesConfigTokenizerAndOneWeightFormat) {
  const auto plan = plan_hub_files({"README.md", "config.json", "model-00002-of-00002.safetensors", "tokenizer.json",
                                    "model-00001-of-00002.safetensors", "pytorch_model.bin", "onnx/model.safetensors"},
                                   "a/b");
  EXPECT_EQ(plan.files, (std::vector<std::string>{"config.json", "tokenizer.json", "model-00001-of-00002.safetensors",
                                                  "model-00002-of-00002.safetensors"}));
  EXPECT_TRUE(plan.index.empty());
  const auto bin = plan_hub_files({"config.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"}, "a/b");
  EXPECT_EQ(bin.index, "pytorch_model.bin.index.json");
  EXPECT_EQ(bin.files, (std::vector<std::string>{"config.json", "pytorch_model.bin.index.json"}));
  EXPECT_THROW(plan_hub_files({"model.safetensors"}, "a/b"), Error);
  EXPECT_THROW(plan_hub_files({"config.json", "training_args.bin"}, "a/b"), Error);
  EXPECT_EQ(shards_of_index(R"({"weight_map": {"a": "x.safetensors", "b": "x.safetensors", "c": "y.safetensors"}})", "i"),
            (std::vector<std::string>{"x.safetensors", "y.safetensors"}));
  for (const char* bad : {"../x", "/etc/passwd", "a/../../x", ""})
    EXPECT_THROW(shards_of_index(nlohmann::json{{"weight_map", {{"w", bad}}}}.dump(), "i"), Error) << bad;
}

TEST(HubFiles, MissingLibcurlSaysWhatToInstall) {
  try {
    load_curl_api({"libnanovllm-no-such-curl.so.4"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("needs libcurl"), HasSubstr("libcurl4"), HasSubstr("pass its folder")));
  }
}

}  // namespace
}  // namespace nanovllm
