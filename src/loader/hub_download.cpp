#include "loader/hub_download.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/hub_http.h"
#include "runtime/error.h"

namespace nanovllm {
namespace fs = std::filesystem;

namespace {

// Percent-encoding of a path segment (and of '/' too unless keep_slash), as urllib's quote().
std::string quote_url(const std::string& s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// W/"abc" -> abc, as huggingface_hub normalises ETags before naming blobs by them.
std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e.erase(0, 2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

// A name that becomes one path component (a commit, an ETag): nothing that could leave its folder.
bool safe_component(const std::string& s) {
  if (s.empty() || s.size() > 255 || s[0] == '.') return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

std::string origin_of(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? url : url.substr(0, slash);
}

// Holds an exclusive flock on a lock file for its lifetime.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot open the lock file " + path.string() + ": " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

int64_t size_or_zero(const fs::path& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

struct FileMeta {
  std::string etag;
  int64_t size = -1;  // -1: not announced
};

// One download of one model revision.
class Downloader {
 public:
  Downloader(const HubModelId& id, const fs::path& cache, const HubOptions& o)
      : id_(id), cache_(cache), o_(o), http_(o.token), repo_dir_(cache / hf_repo_folder(id.repo)),
        bar_(o.progress && ::isatty(STDERR_FILENO)) {}

  fs::path run() {
    list_repo();
    const HubFilePlan plan = plan_hub_files(siblings_, id_.repo);
    const fs::path snap = repo_dir_ / "snapshots" / commit_;
    if (o_.progress)
      std::fprintf(stderr, "nanovllm: downloading %s (revision %s, commit %s) from %s into %s\n", id_.repo.c_str(),
                   id_.revision.c_str(), commit_.c_str(), o_.endpoint.c_str(), repo_dir_.c_str());
    std::vector<std::pair<std::string, std::string>> links;  // (file, etag) still to link
    auto need = [&](const std::string& file) {
      if (fs::exists(snap / file)) return;  // linked before (fs::exists follows the link)
      links.emplace_back(file, fetch(file));
    };
    for (const std::string& f : plan.files) need(f);
    if (!plan.index.empty()) {
      fs::path index_path = snap / plan.index;
      for (const auto& [f, etag] : links)
        if (f == plan.index) index_path = repo_dir_ / "blobs" / etag;
      for (const std::string& shard : shards_of_index(read_text(index_path), plan.index)) {
        if (std::find(siblings_.begin(), siblings_.end(), shard) == siblings_.end())
          throw Error(plan.index + " of model '" + id_.repo + "' names " + shard + ", which the repo does not have");
        need(shard);
      }
    }
    // config.json last: its link marks the snapshot complete for find_in_hf_cache.
    std::stable_partition(links.begin(), links.end(), [](const auto& l) { return l.first != "config.json"; });
    for (const auto& [file, etag] : links) link(snap, file, etag);
    if (id_.revision != commit_) write_ref();
    return snap;
  }

 private:
  const HubModelId& id_;
  const fs::path cache_;
  const HubOptions& o_;
  HubHttp http_;
  const fs::path repo_dir_;
  const bool bar_;
  std::string commit_;
  std::vector<std::string> siblings_;

  static std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw Error("cannot read " + p.string());
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  [[noreturn]] void fail_network(const std::string& url, const HttpResult& r, const std::string& extra = "") const {
    throw Error("cannot download model '" + id_.repo + "' from " + o_.endpoint + ": " + r.error + " (curl error " +
                std::to_string(r.curl_code) + ", " + url + ")" + extra +
                ". Check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only models already in the "
                "cache at " + cache_.string());
  }

  [[noreturn]] void fail_http(const std::string& file, const std::string& url, const HttpResult& r) const {
    const std::string code = r.header("x-error-code"), msg = r.header("x-error-message");
    const std::string detail = " (HTTP " + std::to_string(r.status) + (msg.empty() ? "" : ": " + msg) + ")";
    const std::string model = "model '" + id_.repo + "'";
    const std::string token_hint = o_.token.empty() ? "no token was sent" : "the token that was sent was refused";
    if (code == "RepoNotFound" || (r.status == 404 && code.empty() && file.empty() && id_.revision == "main"))
      throw Error(model + " was not found on " + o_.endpoint + detail +
                  ": check the id; a private model also needs HF_TOKEN (" + token_hint + ")");
    if (code == "RevisionNotFound" || (r.status == 404 && code.empty() && file.empty()))
      throw Error("revision '" + id_.revision + "' of " + model + " was not found on " + o_.endpoint + detail +
                  " (no such branch, tag or commit, or no such model)");
    if (r.status == 404 || code == "EntryNotFound")
      throw Error("file '" + file + "' of " + model + " (commit " + commit_ + ") was not found on " + o_.endpoint + detail);
    if (r.status == 401 || r.status == 403 || code == "GatedRepo")
      throw Error("access to " + model + " was refused" + detail + ": it is gated or private. Request access at " +
                  o_.endpoint + "/" + id_.repo + " and set HF_TOKEN (or save the token in $HF_HOME/token) to a token "
                  "that has it; " + token_hint);
    std::string body = r.body.substr(0, 200);
    throw Error("downloading " + model + " failed: HTTP " + std::to_string(r.status) + " from " + url +
                (msg.empty() ? (body.empty() ? "" : ": " + body) : ": " + msg));
  }

  // The revision's commit and file names: GET /api/models/{repo}/revision/{revision}.
  void list_repo() {
    const std::string url = o_.endpoint + "/api/models/" + id_.repo + "/revision/" + quote_url(id_.revision, false);
    const HttpResult r = http_.get(url);
    if (r.curl_code != 0) fail_network(url, r);
    if (r.status != 200) fail_http("", url, r);
    try {
      const auto j = nlohmann::json::parse(r.body);
      commit_ = j.at("sha").get<std::string>();
      for (const auto& s : j.at("siblings")) siblings_.push_back(s.at("rfilename").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error("the hub's listing of model '" + id_.repo + "' (" + url + ") is not what was expected: " + e.what());
    }
    if (!safe_component(commit_)) throw Error("the hub's listing of model '" + id_.repo + "' has a bad commit '" + commit_ + "'");
  }

  std::string resolve_url(const std::string& file) const {
    return o_.endpoint + "/" + id_.repo + "/resolve/" + commit_ + "/" + quote_url(file, true);
  }

  // The file's ETag and size from a HEAD of its resolve URL, whose redirect to a CDN (LFS files)
  // carries them in X-Linked-Etag / X-Linked-Size. Relative redirects (a renamed repo) are followed.
  FileMeta head(const std::string& file) {
    std::string url = resolve_url(file);
    for (int hop = 0;; ++hop) {
      const HttpResult r = http_.head(url);
      if (r.curl_code != 0) fail_network(url, r);
      const bool redirect = r.status >= 300 && r.status < 400;
      std::string etag = r.header("x-linked-etag");
      if (etag.empty()) etag = r.header("etag");
      if (redirect && etag.empty()) {
        const std::string loc = r.header("location");
        if (hop < 5 && !loc.empty() && loc[0] == '/') {
          url = origin_of(url) + loc;
          continue;
        }
        throw Error("the hub redirected " + url + " to '" + loc + "' without an ETag for file '" + file + "'");
      }
      if (!redirect && r.status != 200) fail_http(file, url, r);
      FileMeta m;
      m.etag = normalize_etag(etag);
      if (!safe_component(m.etag))
        throw Error("the hub sent no usable ETag ('" + etag + "') for file '" + file + "' of model '" + id_.repo + "'");
      std::string size = r.header("x-linked-size");
      if (size.empty() && !redirect) size = r.header("content-length");
      if (!size.empty()) {
        char* end = nullptr;
        const long long n = std::strtoll(size.c_str(), &end, 10);
        if (*end == '\0' && n >= 0) m.size = n;
      }
      if (const std::string c = r.header("x-repo-commit"); !c.empty() && c != commit_)
        throw Error("the hub answered commit " + c + " for file '" + file + "' of commit " + commit_);
      return m;
    }
  }

  // Makes blobs/<etag> hold the file (downloading or resuming it) and returns the ETag.
  std::string fetch(const std::string& file) {
    const FileMeta m = head(file);
    const fs::path blob = repo_dir_ / "blobs" / m.etag;
    auto complete = [&] { return fs::is_regular_file(blob) && (m.size < 0 || size_or_zero(blob) == m.size); };
    if (complete()) return m.etag;
    FileLock lock(cache_ / ".locks" / hf_repo_folder(id_.repo) / (m.etag + ".lock"));
    if (complete()) return m.etag;  // another process finished it while we waited
    fs::create_directories(blob.parent_path());
    fs::path part = blob;
    part += ".incomplete";
    if (m.size >= 0 && size_or_zero(part) > m.size) fs::remove(part);
    const std::string url = resolve_url(file);
    const DownloadProgress progress{file, m.size, bar_};
    const int64_t resumed_at = size_or_zero(part);
    bool restarted = false, resumed = false;
    for (int attempt = 0;; ++attempt) {
      const int64_t before = size_or_zero(part);
      const HttpResult r = http_.download(url, part, progress);
      resumed = r.status == 206;
      if (r.curl_code != 0) {
        const int64_t now = size_or_zero(part);
        if (now > before && attempt < o_.max_resumes) continue;  // it broke off midway: resume
        fail_network(url, r, now > 0 ? "; the " + format_bytes(static_cast<double>(now)) + " received are kept in " +
                                           part.string() + " and the next attempt resumes from there"
                                     : "");
      }
      if (r.status == 416 && !restarted) {  // the part file does not fit the file: start again
        fs::remove(part);
        restarted = true;
        continue;
      }
      if (r.status < 200 || r.status >= 300) fail_http(file, url, r);
      break;
    }
    const int64_t got = size_or_zero(part);
    if (m.size >= 0 && got != m.size) {
      fs::remove(part);
      throw Error("downloaded '" + file + "' of model '" + id_.repo + "' has " + std::to_string(got) +
                  " bytes where the hub announced " + std::to_string(m.size) + "; the partial file was removed, try again");
    }
    fs::rename(part, blob);
    if (o_.progress && !bar_)
      std::fprintf(stderr, "nanovllm: downloaded %s (%s%s)\n", file.c_str(), format_bytes(static_cast<double>(got)).c_str(),
                   resumed && resumed_at > 0 ? (", resumed at " + format_bytes(static_cast<double>(resumed_at))).c_str()
                                             : "");
    return m.etag;
  }

  // snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per folder in <file>).
  void link(const fs::path& snap, const std::string& file, const std::string& etag) {
    const fs::path pointer = snap / file;
    fs::create_directories(pointer.parent_path());
    std::string target;
    for (size_t i = 0, n = std::count(file.begin(), file.end(), '/') + 2; i < n; ++i) target += "../";
    target += "blobs/" + etag;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(pointer)) && !fs::exists(pointer)) fs::remove(pointer, ec);  // dangling
    fs::create_symlink(target, pointer, ec);
    if (ec && !fs::exists(pointer))  // another process may have made it meanwhile
      throw Error("cannot create the link " + pointer.string() + " -> " + target + ": " + ec.message());
  }

  void write_ref() {
    const fs::path ref = repo_dir_ / "refs" / id_.revision;
    fs::create_directories(ref.parent_path());
    fs::path tmp = ref;
    tmp += ".tmp" + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << commit_;  // no newline, as huggingface_hub writes it
      if (!out.flush()) throw Error("cannot write " + tmp.string());
    }
    fs::rename(tmp, ref);
  }
};

}  // namespace

fs::path download_from_hub(const HubModelId& id, const fs::path& cache_dir, const HubOptions& options) {
  if (options.offline)
    throw Error("model '" + id.repo + "' (revision " + id.revision + ") is not in the Hugging Face cache at " +
                cache_dir.string() + ", and HF_HUB_OFFLINE is set (offline mode), so it is not downloaded: unset "
                "HF_HUB_OFFLINE to download it, or pass a model folder");
  return Downloader(id, cache_dir, options).run();
}

}  // namespace nanovllm
