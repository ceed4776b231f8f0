#include "tokenizer/byte_level.h"

#include "tokenizer/unicode.h"

namespace nanovllm::byte_level {

const Tables& tables() {
  static const Tables t = [] {
    Tables t;
    t.char_to_byte.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      char32_t c = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      t.byte_to_char[b] = c;
      unicode::append_utf8(t.byte_to_utf8[b], c);
      t.char_to_byte[c] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return t;
}

void append_mapped(std::string& out, std::string_view bytes) {
  const Tables& t = tables();
  for (unsigned char b : bytes) out += t.byte_to_utf8[b];
}

}  // namespace nanovllm::byte_level
