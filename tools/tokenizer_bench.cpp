// Encode throughput of nanovllm's tokenizer on a corpus of documents (JSON lines, one string a
// line: scripts/device/make-tokenizer-goldens.py bench-corpus writes one), single-threaded and
// over N threads, for comparison with Hugging Face tokenizers on the same corpus
// (scripts/device/make-tokenizer-goldens.sh runs both in one call).
//
//   tokenizer_bench --corpus corpus.jsonl [--threads 1,16] [--repeats 2] [--hashes FILE] DIR
//
// Prints one JSON line per thread count. Each repeat loads the tokenizer afresh, so its word
// cache starts empty (as HF's does for a new Tokenizer); the best repeat is reported. --hashes
// writes, per document, FNV-1a 64 of its ids and their count: the same file HF's side writes.
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.h"
#include "tokenizer/tokenizer.h"

namespace {

uint64_t fnv1a(const std::vector<int32_t>& ids) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int32_t id : ids) {
    uint32_t u = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) h = (h ^ ((u >> (8 * k)) & 0xFF)) * 0x100000001B3ULL;
  }
  return h;
}

std::vector<int> parse_threads(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::max(1, std::stoi(item)));
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string corpus_path, hashes_path, dir;
  std::vector<int> threads = {1, static_cast<int>(std::thread::hardware_concurrency())};
  int repeats = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--corpus") corpus_path = next();
    else if (a == "--threads") threads = parse_threads(next());
    else if (a == "--repeats") repeats = std::max(1, std::stoi(next()));
    else if (a == "--hashes") hashes_path = next();
    else dir = a;
  }
  if (corpus_path.empty() || dir.empty()) {
    std::cerr << "usage: tokenizer_bench --corpus FILE.jsonl [--threads 1,16] [--repeats 2] [--hashes FILE] DIR\n";
    return 2;
  }
  try {
    std::vector<std::string> docs;
    std::ifstream f(corpus_path);
    if (!f) throw nanovllm::Error("cannot open " + corpus_path);
    std::string line;
    size_t bytes = 0;
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      docs.push_back(nlohmann::json::parse(line).get<std::string>());
      bytes += docs.back().size();
    }
    std::string name = std::filesystem::path(dir).filename().string();
    if (name.empty()) name = std::filesystem::path(dir).parent_path().filename().string();
    std::vector<std::vector<int32_t>> results(docs.size());
    for (int t : threads) {
      double best = 1e30, load_s = 0;
      for (int r = 0; r < repeats; ++r) {
        auto t_load = std::chrono::steady_clock::now();
        auto tok = nanovllm::Tokenizer::from_folder(dir);
        load_s = seconds_since(t_load);
        auto t0 = std::chrono::steady_clock::now();
        if (t == 1) {
          for (size_t i = 0; i < docs.size(); ++i) results[i] = tok->encode(docs[i], false);
        } else {
          std::atomic<size_t> next{0};
          std::vector<std::thread> pool;
          for (int k = 0; k < t; ++k)
            pool.emplace_back([&] {
              for (size_t i; (i = next.fetch_add(1)) < docs.size();) results[i] = tok->encode(docs[i], false);
            });
          for (auto& th : pool) th.join();
        }
        best = std::min(best, seconds_since(t0));
      }
      size_t tokens = 0;
      for (const auto& r : results) tokens += r.size();
      nlohmann::json out = {{"impl", "nanovllm"}, {"tokenizer", name}, {"bytes", bytes}, {"docs", docs.size()},
                            {"tokens", tokens}, {"threads", t}, {"seconds", best},
                            {"MBps", bytes / best / 1e6}, {"load_s", load_s}};
      std::cout << out.dump() << std::endl;
    }
    if (!hashes_path.empty()) {
      std::ofstream h(hashes_path);
      char buf[64];
      for (const auto& r : results) {
        std::snprintf(buf, sizeof(buf), "%016llx %zu\n", static_cast<unsigned long long>(fnv1a(r)), r.size());
        h << buf;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
