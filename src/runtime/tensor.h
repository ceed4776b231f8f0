// A dense, row-major tensor in one backend's memory. Tensors are cheap handles: copies share
// the buffer. Which memory a tensor lives in is decided by the Backend that made it; model code
// never allocates memory itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace nanovllm {

enum class Device : uint8_t { CPU, CUDA };

// Bytes of a tensor of this shape and dtype, for a backend's empty(): an Error naming `who` for
// a negative dimension or a size that does not fit in memory's address range.
size_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype, const char* who);

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::vector<int64_t> shape, Device device, std::shared_ptr<void> buffer,
         void* data)
      : dtype_(dtype), shape_(std::move(shape)), device_(device), buffer_(std::move(buffer)),
        data_(data) {}

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T> T* data_as() { return static_cast<T*>(data_); }
  template <typename T> const T* data_as() const { return static_cast<const T*>(data_); }

  // A view of rows [begin, end) of the first dimension, sharing the buffer.
  Tensor rows(int64_t begin, int64_t end) const;
  // The same buffer seen with another shape of the same element count.
  Tensor reshape(std::vector<int64_t> shape) const;

 private:
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  Device device_ = Device::CPU;
  std::shared_ptr<void> buffer_;  // owns the memory; null for non-owning views of nothing
  void* data_ = nullptr;
};

}  // namespace nanovllm
