#include "runtime/tensor.h"

#include "loader/tensor_view.h"
#include "runtime/error.h"

namespace nanovllm {

size_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype, const char* who) {
  uint64_t n = 1;
  const uint64_t most = (uint64_t{1} << 62) / dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) throw Error(std::string(who) + ": empty: negative dimension in " + shape_string(shape));
    if (d != 0 && n > most / static_cast<uint64_t>(d))
      throw Error(std::string(who) + ": empty: the tensor " + shape_string(shape) + " is too large to allocate");
    n *= static_cast<uint64_t>(d);
  }
  return static_cast<size_t>(n) * dtype_size(dtype);
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (rank() == 0 || begin < 0 || end < begin || end > shape_[0])
    throw Error("Tensor::rows(" + std::to_string(begin) + ", " + std::to_string(end) +
                ") out of range for shape " + shape_string(shape_));
  std::vector<int64_t> s = shape_;
  s[0] = end - begin;
  const size_t row_bytes = shape_[0] ? nbytes() / static_cast<size_t>(shape_[0]) : 0;
  return Tensor(dtype_, std::move(s), device_, buffer_,
                static_cast<std::byte*>(data_) + static_cast<size_t>(begin) * row_bytes);
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (n != numel())
    throw Error("Tensor::reshape: " + shape_string(shape_) + " cannot become " + shape_string(shape));
  return Tensor(dtype_, std::move(shape), device_, buffer_, data_);
}

}  // namespace nanovllm
