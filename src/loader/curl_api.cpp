#include "loader/curl_api.h"

#include <dlfcn.h>

#include <mutex>

#include "runtime/error.h"

namespace nanovllm {

namespace {

template <typename Fn>
void bind(void* lib, const char* name, Fn& fn, const std::string& soname) {
  void* sym = dlsym(lib, name);
  if (!sym) throw Error(soname + " has no " + name + ": it is not a usable libcurl");
  fn = reinterpret_cast<Fn>(sym);
}

}  // namespace

CurlApi load_curl_api(const std::vector<std::string>& sonames) {
  void* lib = nullptr;
  std::string soname, why;
  for (const std::string& name : sonames) {
    lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      soname = name;
      break;
    }
    const char* err = dlerror();
    why += (why.empty() ? "" : "; ") + std::string(err ? err : name + ": not found");
  }
  if (!lib)
    throw Error("downloading from the Hugging Face hub needs libcurl, which could not be loaded (" + why +
                "): install it (Debian/Ubuntu: apt install libcurl4; Fedora: dnf install libcurl), or "
                "download the model elsewhere (e.g. `huggingface-cli download org/name` or git clone) and pass "
                "its folder, or copy it into the Hugging Face cache");
  CurlApi api;
  bind(lib, "curl_global_init", api.global_init, soname);
  bind(lib, "curl_easy_init", api.easy_init, soname);
  bind(lib, "curl_easy_setopt", api.easy_setopt, soname);
  bind(lib, "curl_easy_perform", api.easy_perform, soname);
  bind(lib, "curl_easy_getinfo", api.easy_getinfo, soname);
  bind(lib, "curl_easy_reset", api.easy_reset, soname);
  bind(lib, "curl_easy_cleanup", api.easy_cleanup, soname);
  bind(lib, "curl_easy_strerror", api.easy_strerror, soname);
  bind(lib, "curl_slist_append", api.slist_append, soname);
  bind(lib, "curl_slist_free_all", api.slist_free_all, soname);
  bind(lib, "curl_version", api.version, soname);
  if (const CURLcode rc = api.global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK)
    throw Error(soname + ": curl_global_init failed: " + api.easy_strerror(rc));
  return api;
}

const CurlApi& curl_api() {
  static std::mutex mu;
  static CurlApi api;
  static bool loaded = false;
  std::lock_guard<std::mutex> lock(mu);
  if (!loaded) {
    api = load_curl_api({"libcurl.so.4", "libcurl-gnutls.so.4"});
    loaded = true;
  }
  return api;
}

}  // namespace nanovllm
