// HTTP for the hub downloader (hub_download.h), over libcurl loaded at run time (curl_api.h).
// One easy handle per HubHttp, so that connections are reused from file to file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace nanovllm {

struct HttpResult {
  int curl_code = 0;   // 0, or libcurl's error code for a transport failure
  std::string error;   // curl's message for curl_code
  long status = 0;     // the HTTP status of the last response (after redirects)
  std::map<std::string, std::string> headers;  // of the last response; names in lower case
  std::string body;    // get(); for download(), the start of an error response's body
  std::string header(const std::string& lower_name) const;
};

struct DownloadProgress {
  std::string label;   // what is downloaded, shown beside the bar
  int64_t total = -1;  // the file's size if known
  bool bar = false;    // draw a bar on stderr (a terminal), redrawn in place
};

struct HttpTransfer;

// "27.1 MB": decimal units, as the hub's pages show sizes.
std::string format_bytes(double bytes);

class HubHttp {
 public:
  // Loads libcurl (throws Error saying how to do without when it cannot). A non-empty token is
  // sent as "Authorization: Bearer"; libcurl does not send it on to other hosts on redirects.
  explicit HubHttp(const std::string& token);
  ~HubHttp();
  HubHttp(const HubHttp&) = delete;
  HubHttp& operator=(const HubHttp&) = delete;

  HttpResult head(const std::string& url);  // redirects are not followed
  HttpResult get(const std::string& url);   // redirects followed; the body is kept (64 MiB at most)
  // Appends the body of `url` to the file `part`, asking only for the bytes after its current
  // size (Range: bytes=N-). A 200 answer to a Range request (a server without ranges) rewrites
  // `part` from byte 0; a 206 must start where `part` ends. An error status leaves `part` as it
  // was. Throws Error when `part` cannot be written (disk full), keeping it for a later resume.
  HttpResult download(const std::string& url, const std::filesystem::path& part, const DownloadProgress& progress);

 private:
  HttpResult perform(const std::string& url, HttpTransfer& t);
  void* curl_ = nullptr;     // CURL*
  void* headers_ = nullptr;  // curl_slist*: the request headers
};

}  // namespace nanovllm
