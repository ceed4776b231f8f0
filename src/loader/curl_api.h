// libcurl, loaded at run time. The binaries must run where libcurl is absent (or only its
// runtime, no -dev package, is installed), and only a download needs it, so nothing links
// against it: the first download dlopen()s libcurl.so.4 (or the GnuTLS build,
// libcurl-gnutls.so.4, which has the same ABI) and looks up the few functions below. Types and
// constants come from Debian's curl/curl.h at build time; the ABI is stable since libcurl 7.x.
#pragma once

#define CURL_DISABLE_TYPECHECK  // calls go through the pointers below, not curl's macros
#include <curl/curl.h>

#include <string>
#include <vector>

namespace nanovllm {

struct CurlApi {
  decltype(&curl_global_init) global_init = nullptr;
  decltype(&curl_easy_init) easy_init = nullptr;
  decltype(&curl_easy_setopt) easy_setopt = nullptr;
  decltype(&curl_easy_perform) easy_perform = nullptr;
  decltype(&curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&curl_easy_reset) easy_reset = nullptr;
  decltype(&curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&curl_easy_strerror) easy_strerror = nullptr;
  decltype(&curl_slist_append) slist_append = nullptr;
  decltype(&curl_slist_free_all) slist_free_all = nullptr;
  decltype(&curl_version) version = nullptr;
};

// Loads the first of `sonames` that dlopen() finds and initialises libcurl. The library is never
// unloaded (libcurl and its TLS library keep global state). Throws nanovllm::Error saying that
// downloading needs libcurl, which package has it, and how to get a model without it.
CurlApi load_curl_api(const std::vector<std::string>& sonames);

// The process's libcurl: load_curl_api({"libcurl.so.4", "libcurl-gnutls.so.4"}) on first use
// (thread-safe); a failure is reported again on every call.
const CurlApi& curl_api();

}  // namespace nanovllm
