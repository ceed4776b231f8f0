#include "runtime/cuda/device_arena.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "runtime/cuda_check.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
size_t round_up(size_t n) { return (n + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; }
std::string mib(size_t b) { return std::to_string(b >> 20) + " MiB"; }
}  // namespace

DeviceArena::~DeviceArena() {
  free_measured();
  if (base_) cudaFree(base_);
}

void DeviceArena::resize(size_t bytes) {
  if (base_) NANOVLLM_CUDA_CHECK(cudaFree(base_));
  base_ = nullptr;
  capacity_ = used_ = 0;
  if (bytes == 0) return;
  bytes = round_up(bytes);
  const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&base_), bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    base_ = nullptr;
    throw Error("cannot allocate " + mib(bytes) + " of GPU step memory: " + cudaGetErrorString(err) +
                " (lower max_num_batched_tokens or max_num_seqs)");
  }
  capacity_ = bytes;
}

void* DeviceArena::allocate(size_t bytes) {
  bytes = round_up(std::max<size_t>(bytes, 1));
  if (measuring_) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error("out of GPU memory while profiling a step of " + mib(used_) + " (+" + mib(bytes) +
                  "): lower max_num_batched_tokens or max_num_seqs");
    }
    measured_.push_back(p);
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    return p;
  }
  if (used_ + bytes > capacity_)
    throw Error("GPU step memory exhausted: the step needs more than the " + mib(capacity_) +
                " measured at start (" + mib(used_) + " used, " + std::to_string(bytes) +
                " bytes more asked); this is an engine bug — please report it with the model and config");
  void* p = base_ + used_;
  used_ += bytes;
  return p;
}

void DeviceArena::reset() {
  if (measuring_) free_measured();
  used_ = 0;
}

void DeviceArena::reserve_to(size_t offset) {
  if (measuring_) return;
  if (offset > capacity_) throw Error("DeviceArena::reserve_to past the end");
  used_ = std::max(used_, offset);
}

void DeviceArena::begin_measuring() {
  reset();
  measuring_ = true;
  peak_ = 0;
}

size_t DeviceArena::end_measuring() {
  free_measured();
  measuring_ = false;
  used_ = 0;
  return peak_;
}

void DeviceArena::free_measured() {
  for (void* p : measured_) cudaFree(p);
  measured_.clear();
}

}  // namespace nanovllm
