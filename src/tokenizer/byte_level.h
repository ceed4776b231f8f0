// GPT-2's byte-to-character map (bytes_to_unicode): every byte gets a printable character, so
// that byte-level BPE vocabularies are strings. Printable Latin-1 bytes map to themselves; the
// other 68 bytes map to U+0100.. in byte order.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace nanovllm::byte_level {

struct Tables {
  std::array<char32_t, 256> byte_to_char{};
  std::array<std::string, 256> byte_to_utf8{};  // the character above, UTF-8 encoded
  std::array<int16_t, 512> char_to_byte{};       // index: code point < 512; -1 when unmapped
};

const Tables& tables();

// Appends the byte-level form of `bytes` (each byte replaced by its character).
void append_mapped(std::string& out, std::string_view bytes);

// The GPT-2 pre-tokenizer regex that ByteLevel(use_regex = true) splits with.
inline constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

}  // namespace nanovllm::byte_level
