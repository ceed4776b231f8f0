// Element types that appear in checkpoints and tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace nanovllm {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

size_t dtype_size(DType t);
// The name as safetensors writes it ("F32", "BF16", ...).
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; nullopt for names we do not know.
std::optional<DType> dtype_from_safetensors(std::string_view s);
// Parses a config.json torch_dtype ("float32", "bfloat16", "float16", also "fp16"/"bf16").
std::optional<DType> dtype_from_torch_name(std::string_view s);
bool is_floating(DType t);

// Bit-exact conversions between the 16-bit float formats and float32.
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n floating-point elements of type `src_type` at `src` into float32 at `dst`.
// Throws Error for non-floating types.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);

}  // namespace nanovllm
