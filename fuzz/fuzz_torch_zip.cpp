// libFuzzer target for whole pytorch_model.bin archives: any byte string must either load into
// views that lie inside the input (or inside a copy they own) and agree with their dtype and
// shape, or be a nanovllm::Error. A crash, a sanitizer report, any other exception, or a view that
// breaks those rules is a finding.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "loader/torch_bin.h"
#include "runtime/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* begin = reinterpret_cast<const std::byte*>(data);
  auto owner = std::make_shared<int>(0);
  try {
    const nanovllm::TensorMap m = nanovllm::parse_torch_bin({begin, size}, "fuzz-input", owner);
    for (const auto& [name, v] : m) {
      if (static_cast<size_t>(v.numel()) * nanovllm::dtype_size(v.dtype) != v.nbytes)
        __builtin_trap();
      if (v.owner == owner) {
        // A view into the input: checked without pointer arithmetic past the end.
        if (v.data < begin) __builtin_trap();
        const size_t offset = static_cast<size_t>(v.data - begin);
        if (offset > size || v.nbytes > size - offset) __builtin_trap();
      } else if (!v.owner) {
        __builtin_trap();  // a copy must be kept alive by its view
      }
      // Touch both ends so ASan sees any out-of-bounds view.
      if (v.nbytes > 0) {
        volatile std::byte first = v.data[0], last = v.data[v.nbytes - 1];
        (void)first;
        (void)last;
      }
    }
  } catch (const nanovllm::Error&) {
    // Rejecting malformed input with an Error is the contract.
  }
  return 0;
}
