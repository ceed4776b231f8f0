// A tensor as it lies in a checkpoint file: dtype, shape and raw little-endian bytes, still in
// the file's dtype. Views never own the bytes; `owner` keeps the mapped file (or, for the rare
// tensor that had to be copied, its buffer) alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace nanovllm {

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;
  std::string source;  // the file it came from, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// "[2, 3]"
std::string shape_string(const std::vector<int64_t>& shape);

// Tensor name -> view. An ordered map so that error messages and listings are stable.
using TensorMap = std::map<std::string, TensorView>;

}  // namespace nanovllm
