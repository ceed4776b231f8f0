#include "tokenizer/jinja_utf8.h"

#include <algorithm>

namespace nanovllm::jinja {

uint32_t next_code_point(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  int extra = b0 < 0x80 ? 0 : (b0 >> 5) == 0x6 ? 1 : (b0 >> 4) == 0xE ? 2 : (b0 >> 3) == 0x1E ? 3 : -1;
  if (extra <= 0 || pos + static_cast<size_t>(extra) >= s.size()) {
    ++pos;
    return b0;
  }
  uint32_t cp = b0 & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) {
    const auto b = static_cast<unsigned char>(s[pos + k]);
    if ((b & 0xC0) != 0x80) {
      ++pos;
      return b0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  pos += extra + 1;
  return cp;
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t pos = 0; pos < s.size();) {
    offsets.push_back(pos);
    next_code_point(s, pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size(); ++n) next_code_point(s, pos);
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_python_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {

std::vector<uint32_t> decode_all(std::string_view s) {
  std::vector<uint32_t> cps;
  for (size_t pos = 0; pos < s.size();) cps.push_back(next_code_point(s, pos));
  return cps;
}

}  // namespace

std::string python_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::vector<uint32_t> strip_set;
  if (chars) strip_set = decode_all(*chars);
  auto strips = [&](uint32_t cp) {
    return chars ? std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end() : is_python_space(cp);
  };
  const std::vector<size_t> offsets = code_point_offsets(s);
  size_t first = 0, last = offsets.size() - 1;  // code point range [first, last)
  if (left) {
    while (first < last) {
      size_t pos = offsets[first];
      if (!strips(next_code_point(s, pos))) break;
      ++first;
    }
  }
  if (right) {
    while (last > first) {
      size_t pos = offsets[last - 1];
      if (!strips(next_code_point(s, pos))) break;
      --last;
    }
  }
  return std::string(s.substr(offsets[first], offsets[last] - offsets[first]));
}

std::vector<std::string> python_split(std::string_view s, const std::string* sep, long maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<long>(parts.size()) < maxsplit) {
      const size_t hit = s.find(*sep, start);
      if (hit == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, hit - start));
      start = hit + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  size_t pos = 0;
  while (true) {
    // Skip a whitespace run, then take a word.
    size_t word = pos;
    while (word < s.size()) {
      size_t next = word;
      if (!is_python_space(next_code_point(s, next))) break;
      word = next;
    }
    if (word >= s.size()) break;
    if (maxsplit >= 0 && static_cast<long>(parts.size()) == maxsplit) {
      parts.emplace_back(s.substr(word));  // the rest, trailing whitespace kept as Python does
      // Python strips only leading whitespace from the remainder when maxsplit is reached.
      return parts;
    }
    size_t end = word;
    while (end < s.size()) {
      size_t next = end;
      if (is_python_space(next_code_point(s, next))) break;
      end = next;
    }
    parts.emplace_back(s.substr(word, end - word));
    pos = end;
  }
  return parts;
}

std::vector<std::string> python_rsplit(std::string_view s, const std::string* sep, long maxsplit) {
  if (maxsplit < 0) return python_split(s, sep, maxsplit);
  std::vector<std::string> parts;
  if (sep) {
    size_t end = s.size();
    while (static_cast<long>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      parts.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  // Whitespace rsplit with a limit: split words from the right.
  const std::vector<size_t> offsets = code_point_offsets(s);
  auto space_at = [&](size_t i) {
    size_t pos = offsets[i];
    return is_python_space(next_code_point(s, pos));
  };
  long i = static_cast<long>(offsets.size()) - 1;  // code point index of the end
  while (true) {
    while (i > 0 && space_at(i - 1)) --i;
    if (i == 0) break;
    if (static_cast<long>(parts.size()) == maxsplit) {
      parts.emplace_back(s.substr(0, offsets[i]));
      break;
    }
    long start = i;
    while (start > 0 && !space_at(start - 1)) --start;
    parts.emplace_back(s.substr(offsets[start], offsets[i] - offsets[start]));
    i = start;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

namespace {

// Simple (one-to-one) case pairs of the scripts chat text is mostly written in: Latin with its
// extensions, Greek, Cyrillic, Armenian and fullwidth Latin. Pairs laid out as alternating
// upper/lower code points are described by ranges.
struct AlternatingRange {
  uint32_t first, last;  // inclusive; `first` is an upper-case letter
};
constexpr AlternatingRange kAlternating[] = {
    {0x100, 0x12F}, {0x132, 0x137}, {0x139, 0x148}, {0x14A, 0x177},   {0x179, 0x17E},   {0x460, 0x481},
    {0x48A, 0x4BF}, {0x4C1, 0x4CE}, {0x4D0, 0x52F}, {0x1E00, 0x1E95}, {0x1EA0, 0x1EFF},
};
struct OffsetRange {
  uint32_t first, last;  // inclusive upper-case range; its lower case is at +offset
  uint32_t offset;
};
constexpr OffsetRange kOffset[] = {
    {'A', 'Z', 0x20},     {0xC0, 0xD6, 0x20},   {0xD8, 0xDE, 0x20},     {0x391, 0x3A1, 0x20},
    {0x3A3, 0x3AB, 0x20}, {0x388, 0x38A, 0x25}, {0x38E, 0x38F, 0x3F},   {0x410, 0x42F, 0x20},
    {0x400, 0x40F, 0x50}, {0x531, 0x556, 0x30}, {0xFF21, 0xFF3A, 0x20},
};
constexpr std::pair<uint32_t, uint32_t> kSingles[] = {
    // upper, lower
    {0x178, 0xFF},
    {0x386, 0x3AC},
    {0x38C, 0x3CC},
    {0x4C0, 0x4CF},
};

uint32_t lower_of(uint32_t cp) {
  for (const auto& r : kOffset)
    if (cp >= r.first && cp <= r.last) return cp + r.offset;
  for (const auto& r : kAlternating)
    if (cp >= r.first && cp <= r.last) return ((cp - r.first) % 2 == 0) ? cp + 1 : cp;
  for (const auto& [up, low] : kSingles)
    if (cp == up) return low;
  return cp;
}

uint32_t upper_of(uint32_t cp) {
  if (cp == 0xB5) return 0x39C;   // micro sign
  if (cp == 0x131) return 'I';    // dotless i
  if (cp == 0x17F) return 'S';    // long s
  if (cp == 0x3C2) return 0x3A3;  // final sigma
  for (const auto& r : kOffset)
    if (cp >= r.first + r.offset && cp <= r.last + r.offset) return cp - r.offset;
  for (const auto& r : kAlternating)
    if (cp > r.first && cp <= r.last && (cp - r.first) % 2 == 1) return cp - 1;
  for (const auto& [up, low] : kSingles)
    if (cp == low) return up;
  return cp;
}

bool is_cased(uint32_t cp) { return lower_of(cp) != cp || upper_of(cp) != cp || cp == 0xDF || cp == 0x138; }

void append_upper(std::string& out, uint32_t cp) {
  if (cp == 0xDF) {  // ß
    out += "SS";
    return;
  }
  append_utf8(out, upper_of(cp));
}

}  // namespace

std::string unicode_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) append_upper(out, next_code_point(s, pos));
  return out;
}

std::string unicode_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const std::vector<size_t> offsets = code_point_offsets(s);
  const size_t n = offsets.size() - 1;
  auto cp_at = [&](size_t i) {
    size_t pos = offsets[i];
    return next_code_point(s, pos);
  };
  for (size_t i = 0; i < n; ++i) {
    const uint32_t cp = cp_at(i);
    if (cp == 0x3A3) {
      // Python's final-sigma rule: a capital sigma that ends a word lowers to ς.
      const bool after_cased = i > 0 && is_cased(cp_at(i - 1));
      const bool before_cased = i + 1 < n && is_cased(cp_at(i + 1));
      append_utf8(out, after_cased && !before_cased ? 0x3C2 : 0x3C3);
    } else if (cp == 0x130) {  // İ lowers to i + combining dot above
      out += "i\xCC\x87";
    } else {
      append_utf8(out, lower_of(cp));
    }
  }
  return out;
}

std::string python_title(std::string_view s) {
  // str.title(): a cased letter after an uncased character is upper-cased, others lowered.
  std::string out;
  bool prev_cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = next_code_point(s, pos);
    if (prev_cased)
      append_utf8(out, lower_of(cp));
    else if (cp == 0xDF)
      out += "Ss";
    else
      append_utf8(out, upper_of(cp));
    prev_cased = is_cased(cp);
  }
  return out;
}

std::string python_capitalize(std::string_view s) {
  if (s.empty()) return "";
  size_t pos = 0;
  const uint32_t first = next_code_point(s, pos);
  std::string out;
  if (first == 0xDF)
    out = "Ss";
  else
    append_utf8(out, upper_of(first));
  return out + unicode_lower(s.substr(pos));
}

bool python_islower(std::string_view s) {
  bool cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = next_code_point(s, pos);
    if (lower_of(cp) != cp) return false;
    cased |= is_cased(cp);
  }
  return cased;
}

bool python_isupper(std::string_view s) {
  bool cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = next_code_point(s, pos);
    if (upper_of(cp) != cp || cp == 0xDF) return false;
    cased |= is_cased(cp);
  }
  return cased;
}

bool is_word_char(uint32_t cp) {
  // Python's \w without its tables: ASCII letters, digits and '_', and above ASCII everything
  // but the spaces, punctuation and symbol blocks (Latin-1 signs, × and ÷, general
  // punctuation through miscellaneous symbols, CJK punctuation, fullwidth ASCII signs, emoji).
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  if (cp <= 0xBF)
    return cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA ||
           (cp >= 0xBC && cp <= 0xBE);
  if (cp == 0xD7 || cp == 0xF7) return false;
  if (cp >= 0x2000 && cp <= 0x2BFF) return false;
  if (cp >= 0x3000 && cp <= 0x303F) return false;
  if ((cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
      (cp >= 0xFF5B && cp <= 0xFF65))
    return false;
  if (cp >= 0x1F000 && cp <= 0x1FAFF) return false;
  if (cp == 0xFE0F || cp == 0x200D) return false;
  return !is_python_space(cp);
}

}  // namespace nanovllm::jinja
