// Step memory on the device: one block, handed out by a bump pointer and reclaimed all at once
// when the next step begins. A step therefore never calls cudaMalloc or cudaFree, and the same
// sequence of requests gets the same addresses every time, which is what lets a CUDA graph
// captured over arena memory replay.
//
// Measuring mode (profiling): every request is a real cudaMalloc, freed at the next reset, and
// the largest total of one step is recorded; the engine then fixes the block's size to it.
#pragma once

#include <cstddef>
#include <vector>

namespace nanovllm {

class DeviceArena {
 public:
  static constexpr size_t kAlign = 256;  // cuBLASLt's and the kernels' vector loads like this
  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // Frees what there is and allocates a block of `bytes` (0: none).
  void resize(size_t bytes);
  void* allocate(size_t bytes);
  // Reclaims everything handed out (in measuring mode: frees it).
  void reset();
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  // Whether p lies in the block (memory a step hands out; not the measuring mode's allocations).
  bool contains(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return base_ && c >= base_ && c < base_ + capacity_;
  }
  // Moves the bump pointer to `offset` if that is further: memory a replayed graph still holds.
  void reserve_to(size_t offset);

  void begin_measuring();
  // Ends measuring and returns the largest step (bytes).
  size_t end_measuring();
  bool measuring() const { return measuring_; }

 private:
  void free_measured();
  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  bool measuring_ = false;
  size_t peak_ = 0;
  std::vector<void*> measured_;
};

}  // namespace nanovllm
