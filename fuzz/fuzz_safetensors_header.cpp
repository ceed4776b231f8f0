// libFuzzer target for the safetensors parser: any byte string must either parse into views that
// lie inside the input and agree with their dtype and shape, or be a nanovllm::Error. A crash,
// a sanitizer report, any other exception, or a view that breaks those rules is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "loader/safetensors.h"
#include "runtime/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* begin = reinterpret_cast<const std::byte*>(data);
  try {
    const nanovllm::TensorMap m = nanovllm::parse_safetensors({begin, size}, "fuzz-input");
    for (const auto& [name, v] : m) {
      // Checked without pointer arithmetic past the end, so the check itself stays defined.
      if (v.data < begin) __builtin_trap();
      const size_t offset = static_cast<size_t>(v.data - begin);
      if (offset > size || v.nbytes > size - offset) __builtin_trap();
      if (static_cast<size_t>(v.numel()) * nanovllm::dtype_size(v.dtype) != v.nbytes)
        __builtin_trap();
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
