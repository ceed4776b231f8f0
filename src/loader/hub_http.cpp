#include "loader/hub_http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "loader/curl_api.h"
#include "runtime/error.h"

namespace nanovllm {

namespace {
constexpr size_t kMaxBody = size_t{64} << 20;  // an API answer: a model's listing is a few KiB
constexpr size_t kMaxErrorBody = 4096;         // of an error page, for the message
using Clock = std::chrono::steady_clock;
}  // namespace

// The state of one request, shared with libcurl's callbacks.
struct HttpTransfer {
  HttpResult result;
  bool keep_body = false;         // get(): the body goes to result.body
  int fd = -1;                    // download(): the part file, opened for appending
  int64_t offset = 0;             // its size before this request: the Range start
  int64_t received = 0;           // body bytes written to it by this request
  bool body_started = false;
  bool to_file = false;           // decided at the first body byte, by the final status
  int write_errno = 0;            // why writing the part file failed
  std::string abort_reason;       // why the data callback stopped the transfer
  const DownloadProgress* progress = nullptr;
  Clock::time_point start = Clock::now(), last_draw;
  bool drew = false;
};

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) bytes /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

std::string HttpResult::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

// Called once per header line of every response, redirects included: a status line starts a
// new response, so `headers` ends up holding those of the last one.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<HttpTransfer*>(user);
  const size_t len = size * n;
  std::string line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    t->result.headers.clear();
    const size_t sp = line.find(' ');
    t->result.status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
  } else if (const size_t colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t v = line.find_first_not_of(" \t", colon + 1);
    t->result.headers[name] = v == std::string::npos ? std::string() : line.substr(v);
  }
  return len;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<HttpTransfer*>(user);
  const size_t len = size * n;
  if (t->result.body.size() + len > kMaxBody) {
    t->abort_reason = "the answer is larger than " + format_bytes(kMaxBody);
    return 0;
  }
  t->result.body.append(data, len);
  return len;
}

// The first byte of the final response's body decides where the body goes: into the part
// file for 200 and 206, into the message for anything else.
bool start_file_body(HttpTransfer* t) {
  const long status = t->result.status;
  if (status == 206) {
    // "Content-Range: bytes START-END/TOTAL": it must continue the part file exactly.
    const std::string range = t->result.header("content-range");
    long long start = -1;
    if (std::sscanf(range.c_str(), "bytes %lld-", &start) != 1 || start != t->offset) {
      t->abort_reason = "the server resumed at '" + range + "', not at byte " + std::to_string(t->offset);
      return false;
    }
    t->to_file = true;
  } else if (status >= 200 && status < 300) {
    // The whole file: a server that ignores Range answers 200, so start again from byte 0.
    if (t->offset > 0 && ::ftruncate(t->fd, 0) != 0) {
      t->write_errno = errno;
      return false;
    }
    t->offset = 0;
    t->to_file = true;
  }
  return true;
}

size_t on_file_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<HttpTransfer*>(user);
  const size_t len = size * n;
  if (!t->body_started) {
    t->body_started = true;
    if (!start_file_body(t)) return 0;
  }
  if (!t->to_file) {
    const size_t room = kMaxErrorBody - std::min(kMaxErrorBody, t->result.body.size());
    t->result.body.append(data, std::min(room, len));
    return len;
  }
  for (size_t done = 0; done < len;) {
    const ssize_t w = ::write(t->fd, data + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      t->write_errno = w < 0 ? errno : EIO;
      return 0;  // libcurl stops with CURLE_WRITE_ERROR
    }
    done += static_cast<size_t>(w);
  }
  t->received += static_cast<int64_t>(len);
  return len;
}

void draw_bar(HttpTransfer* t, bool done) {
  const DownloadProgress& p = *t->progress;
  const int64_t have = t->offset + t->received;
  const double secs = std::chrono::duration<double>(Clock::now() - t->start).count();
  std::string line = "\r\033[K" + p.label + "  ";
  if (p.total > 0) {
    const double frac = std::min(1.0, static_cast<double>(have) / static_cast<double>(p.total));
    const int fill = static_cast<int>(frac * 30);
    char pct[8];
    std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
    line += std::string(pct) + " [" + std::string(fill, '#') + std::string(30 - fill, ' ') + "] " +
            format_bytes(static_cast<double>(have)) + " / " + format_bytes(static_cast<double>(p.total));
  } else {
    line += format_bytes(static_cast<double>(have));
  }
  if (secs > 0) line += "  " + format_bytes(static_cast<double>(t->received) / secs) + "/s";
  if (done) line += "\n";
  std::fputs(line.c_str(), stderr);
  t->drew = true;
  t->last_draw = Clock::now();
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<HttpTransfer*>(user);
  if (t->progress && t->progress->bar && t->to_file && Clock::now() - t->last_draw > std::chrono::milliseconds(100))
    draw_bar(t, false);
  return 0;
}

}  // namespace

HubHttp::HubHttp(const std::string& token) {
  const CurlApi& c = curl_api();
  curl_ = c.easy_init();
  if (!curl_) throw Error("libcurl: curl_easy_init failed");
  curl_slist* list = nullptr;
  if (!token.empty()) list = c.slist_append(list, ("Authorization: Bearer " + token).c_str());
  // Sizes and ETags are those of the stored bytes, as huggingface_hub asks.
  list = c.slist_append(list, "Accept-Encoding: identity");
  headers_ = list;
}

HubHttp::~HubHttp() {
  const CurlApi& c = curl_api();
  c.easy_cleanup(static_cast<CURL*>(curl_));
  c.slist_free_all(static_cast<curl_slist*>(headers_));
}

HttpResult HubHttp::perform(const std::string& url, HttpTransfer& t) {
  const CurlApi& c = curl_api();
  CURL* h = static_cast<CURL*>(curl_);
  char errbuf[CURL_ERROR_SIZE] = {0};
  c.easy_setopt(h, CURLOPT_URL, url.c_str());
  c.easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  c.easy_setopt(h, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(headers_));
  c.easy_setopt(h, CURLOPT_USERAGENT, "nanovllm/0.1");
  c.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  c.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  c.easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a transfer stalled for a minute fails
  c.easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  c.easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  c.easy_setopt(h, CURLOPT_HEADERFUNCTION, static_cast<curl_write_callback>(on_header));
  c.easy_setopt(h, CURLOPT_HEADERDATA, &t);
  c.easy_setopt(h, CURLOPT_WRITEDATA, &t);
  c.easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  const CURLcode rc = c.easy_perform(h);
  if (rc != CURLE_OK) {
    t.result.curl_code = rc;
    t.result.error = errbuf[0] ? errbuf : c.easy_strerror(rc);
  }
  long status = 0;
  if (c.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status != 0) t.result.status = status;
  c.easy_reset(h);  // forgets every option (errbuf among them); keeps the open connections
  return std::move(t.result);
}

HttpResult HubHttp::head(const std::string& url) {
  HttpTransfer t;
  CURL* h = static_cast<CURL*>(curl_);
  curl_api().easy_setopt(h, CURLOPT_NOBODY, 1L);
  curl_api().easy_setopt(h, CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(on_body));
  return perform(url, t);
}

HttpResult HubHttp::get(const std::string& url) {
  HttpTransfer t;
  CURL* h = static_cast<CURL*>(curl_);
  curl_api().easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_api().easy_setopt(h, CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(on_body));
  HttpResult r = perform(url, t);
  if (!t.abort_reason.empty() && r.curl_code == CURLE_WRITE_ERROR) r.error = t.abort_reason;
  return r;
}

HttpResult HubHttp::download(const std::string& url, const std::filesystem::path& part, const DownloadProgress& progress) {
  HttpTransfer t;
  t.progress = &progress;
  t.fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (t.fd < 0) throw Error("cannot open " + part.string() + " for writing: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(t.fd, &st) == 0) t.offset = st.st_size;
  const CurlApi& c = curl_api();
  CURL* h = static_cast<CURL*>(curl_);
  const std::string range = std::to_string(t.offset) + "-";
  if (t.offset > 0) c.easy_setopt(h, CURLOPT_RANGE, range.c_str());
  c.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  c.easy_setopt(h, CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(on_file_data));
  c.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  c.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, static_cast<curl_xferinfo_callback>(on_progress));
  HttpResult r = perform(url, t);
  // An empty 200 body calls no data callback: the whole file is then empty.
  if (r.curl_code == CURLE_OK && r.status == 200 && !t.body_started && t.offset > 0 && ::ftruncate(t.fd, 0) != 0)
    t.write_errno = errno;
  if (progress.bar && (t.drew || (r.curl_code == CURLE_OK && t.to_file))) draw_bar(&t, true);
  if (::close(t.fd) != 0 && t.write_errno == 0) t.write_errno = errno;
  if (t.write_errno != 0) {
    const int e = t.write_errno;
    std::string msg = "writing " + part.string() + ": " + std::strerror(e);
    if (e == ENOSPC || e == EDQUOT)
      msg += " (the disk is full: free some space and ask for the model again; the download resumes from the " +
             format_bytes(static_cast<double>(t.offset + t.received)) + " kept in this file)";
    throw Error(msg);
  }
  if (!t.abort_reason.empty()) throw Error("downloading " + url + ": " + t.abort_reason);
  return r;
}

}  // namespace nanovllm
