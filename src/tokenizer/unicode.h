// UTF-8 and Unicode helpers for the tokenizer: strict decoding, Rust-compatible lossy decoding
// (Hugging Face decoders use String::from_utf8_lossy), NFC normalization, and the character
// classes that added-token matching uses (Rust's char::is_whitespace and regex \w).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nanovllm::unicode {

// Length of the UTF-8 sequence a lead byte starts (1..4), or 0 for a byte that cannot lead.
inline int utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

// Decodes the character at s[i] of valid UTF-8 and advances i past it.
inline char32_t next_char(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) { ++i; return c; }
  int n = utf8_sequence_length(c);
  char32_t cp = c & (0x7F >> n);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append_utf8(std::string& out, char32_t cp);

// Byte offset of the first byte that makes `s` invalid UTF-8 (overlong forms, surrogates and
// code points past U+10FFFF included), or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// True when `s` ends inside a UTF-8 sequence that more bytes could still complete.
bool ends_with_incomplete_utf8(std::string_view s);

bool is_whitespace(char32_t cp);  // Unicode White_Space (Rust char::is_whitespace, regex \s)
bool is_word_char(char32_t cp);   // Rust regex \w: Alphabetic, M, Nd, Pc, Join_Control

// NFC (canonical decomposition, canonical ordering, canonical composition). Text that passes
// the NFC quick check is returned unchanged without being rebuilt.
std::string nfc(std::string_view s);
bool is_nfc_quick(std::string_view s);

}  // namespace nanovllm::unicode
