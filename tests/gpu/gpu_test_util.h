// What every GPU test file needs: skip (reported as SKIPPED, never a silent pass) where there is
// no CUDA device; device buffers between poisoned guards; a stream of the test's own.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"

#define REQUIRE_GPU()                                                              \
  do {                                                                             \
    if (::nanovllm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";    \
  } while (0)

namespace nanovllm::test {

// n elements of T on the device between guards of 64 poisoned (0xFF) bytes; `misalign` (2-byte
// T only) shifts the data 2 bytes off 16-byte alignment, forcing kernels' element-at-a-time
// paths. download() counts the guard bytes a kernel wrote.
template <typename T>
class DeviceBuf {
 public:
  explicit DeviceBuf(size_t n, bool misalign = false)
      : n_(n), lead_(misalign ? kGuard + 2 : kGuard), bytes_(lead_ + n * sizeof(T) + kGuard) {
    static_assert(sizeof(T) >= 1);
    if (misalign && sizeof(T) != 2) ADD_FAILURE() << "DeviceBuf: only 2-byte buffers are misaligned";
    NANOVLLM_CUDA_CHECK(cudaMalloc(&base_, bytes_));
    poison();
  }
  ~DeviceBuf() { cudaFree(base_); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;

  T* data() { return reinterpret_cast<T*>(static_cast<char*>(base_) + lead_); }
  size_t bytes() const { return n_ * sizeof(T); }  // of the data
  void poison() { NANOVLLM_CUDA_CHECK(cudaMemset(base_, 0xFF, bytes_)); }
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n_);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(data(), h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() {
    std::vector<unsigned char> all(bytes_);
    NANOVLLM_CUDA_CHECK(cudaMemcpy(all.data(), base_, bytes_, cudaMemcpyDeviceToHost));
    const size_t end = lead_ + n_ * sizeof(T);
    bad_guards_ = 0;
    for (size_t i = 0; i < bytes_; ++i)
      if ((i < lead_ || i >= end) && all[i] != 0xFF) ++bad_guards_;
    std::vector<T> out(n_);
    if (n_) std::memcpy(out.data(), all.data() + lead_, n_ * sizeof(T));
    return out;
  }
  size_t bad_guards() const { return bad_guards_; }  // as of the last download()

 private:
  static constexpr size_t kGuard = 64;
  size_t n_, lead_, bytes_, bad_guards_ = 0;
  void* base_ = nullptr;
};

// A stream of its own, to exercise the launchers' stream argument. Blocking (the default
// flags), so its kernels wait for the uploads queued on the legacy default stream.
class Stream {
 public:
  Stream() { NANOVLLM_CUDA_CHECK(cudaStreamCreate(&s_)); }
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }
  void sync() { NANOVLLM_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_{};
};

}  // namespace nanovllm::test
