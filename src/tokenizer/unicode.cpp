#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <memory>
#include <vector>

#include "tokenizer/unicode_tables.h"

namespace nanovllm::unicode {

namespace ut = unicode_tables;

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// How many bytes of a sequence starting at s[i] are a valid prefix of some character (the
// "maximal subpart" of Unicode's U+FFFD substitution practice, which Rust follows), and whether
// that prefix is a whole character. The second-byte ranges exclude overlongs, surrogates and
// code points past U+10FFFF.
struct Prefix { size_t length; bool complete; };

Prefix valid_prefix(std::string_view s, size_t i) {
  unsigned char lead = static_cast<unsigned char>(s[i]);
  int n = utf8_sequence_length(lead);
  if (n == 1) return {1, true};
  if (n == 0) return {1, false};
  if (i + 1 >= s.size()) return {1, false};
  unsigned char second = static_cast<unsigned char>(s[i + 1]);
  unsigned char lo = 0x80, hi = 0xBF;
  if (lead == 0xE0) lo = 0xA0;
  if (lead == 0xED) hi = 0x9F;
  if (lead == 0xF0) lo = 0x90;
  if (lead == 0xF4) hi = 0x8F;
  if (second < lo || second > hi) return {1, false};
  size_t k = 2;
  while (k < static_cast<size_t>(n)) {
    if (i + k >= s.size() || !is_continuation(static_cast<unsigned char>(s[i + k]))) return {k, false};
    ++k;
  }
  return {k, true};
}

bool in_ranges(const ut::Range* ranges, size_t n, char32_t cp) {
  const ut::Range* end = ranges + n;
  const ut::Range* it = std::upper_bound(ranges, end, cp, [](char32_t c, const ut::Range& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // Eight ASCII bytes at a time: the common case.
    while (i + 8 <= n) {
      uint64_t w;
      std::copy_n(s.data() + i, 8, reinterpret_cast<char*>(&w));
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
    Prefix p = valid_prefix(s, i);
    if (!p.complete) return i;
    i += p.length;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    Prefix p = valid_prefix(bytes, i);
    if (p.complete) {
      out.append(bytes.data() + i, p.length);
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += p.length;
  }
  return out;
}

bool ends_with_incomplete_utf8(std::string_view s) {
  // A character is at most 4 bytes: look for the start of the last sequence.
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    unsigned char b = static_cast<unsigned char>(s[n - back]);
    if (is_continuation(b)) continue;
    int len = utf8_sequence_length(b);
    if (len <= static_cast<int>(back)) return false;
    Prefix p = valid_prefix(s, n - back);
    return !p.complete && p.length == back;  // a valid prefix that reaches the end
  }
  return false;
}

bool is_whitespace(char32_t cp) { return in_ranges(ut::kWhiteSpace, ut::kWhiteSpace_size, cp); }
bool is_word_char(char32_t cp) { return in_ranges(ut::kWordChar, ut::kWordChar_size, cp); }

namespace {

constexpr char32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr int kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr int kHangulNCount = kHangulVCount * kHangulTCount, kHangulSCount = kHangulLCount * kHangulNCount;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = ut::kCombiningClass + ut::kCombiningClass_size;
  const auto* it = std::upper_bound(ut::kCombiningClass, end, cp,
                                    [](char32_t c, const ut::CombiningClassRange& r) { return c < r.first; });
  if (it == ut::kCombiningClass || cp > (it - 1)->last) return 0;
  return (it - 1)->ccc;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kHangulS && cp < kHangulS + kHangulSCount) {
    int s = static_cast<int>(cp - kHangulS);
    out.push_back(kHangulL + s / kHangulNCount);
    out.push_back(kHangulV + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount) out.push_back(kHangulT + s % kHangulTCount);
    return;
  }
  const auto* end = ut::kDecomposition + ut::kDecomposition_size;
  const auto* it = std::lower_bound(ut::kDecomposition, end, cp,
                                    [](const ut::Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

// The composite of a starter and a following character, or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kHangulL && a < kHangulL + kHangulLCount && b >= kHangulV && b < kHangulV + kHangulVCount)
    return kHangulS + ((a - kHangulL) * kHangulVCount + (b - kHangulV)) * kHangulTCount;
  if (a >= kHangulS && a < kHangulS + kHangulSCount && (a - kHangulS) % kHangulTCount == 0 &&
      b > kHangulT && b < kHangulT + kHangulTCount)
    return a + (b - kHangulT);
  const auto* end = ut::kComposition + ut::kComposition_size;
  const auto* it = std::lower_bound(ut::kComposition, end, std::pair{a, b},
                                    [](const ut::Composition& c, std::pair<char32_t, char32_t> k) {
                                      return c.first != k.first ? c.first < k.first : c.second < k.second;
                                    });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

// Basic-plane characters that the quick check must look at (NFC_QC not Yes, or a non-zero
// combining class); built once from the tables.
const std::bitset<0x10000>& bmp_needs_check() {
  static const std::unique_ptr<std::bitset<0x10000>> bits = [] {
    auto b = std::make_unique<std::bitset<0x10000>>();
    for (size_t i = 0; i < ut::kNfcQuickCheckNotYes_size; ++i)
      for (char32_t c = ut::kNfcQuickCheckNotYes[i].first; c <= ut::kNfcQuickCheckNotYes[i].last && c < 0x10000; ++c)
        b->set(c);
    for (size_t i = 0; i < ut::kCombiningClass_size; ++i)
      for (char32_t c = ut::kCombiningClass[i].first; c <= ut::kCombiningClass[i].last && c < 0x10000; ++c)
        b->set(c);
    return b;
  }();
  return *bits;
}

bool needs_check(char32_t cp) {
  if (cp < 0x10000) return bmp_needs_check().test(cp);
  return combining_class(cp) != 0 || in_ranges(ut::kNfcQuickCheckNotYes, ut::kNfcQuickCheckNotYes_size, cp);
}

}  // namespace

bool is_nfc_quick(std::string_view s) {
  // Code points below U+0300 (lead bytes below 0xCC) are all NFC_QC=Yes with class 0.
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0xCC) {
      ++i;
      continue;
    }
    char32_t cp = next_char(s, i);
    if (needs_check(cp)) return false;
  }
  return true;
}

std::string nfc(std::string_view s) {
  if (is_nfc_quick(s)) return std::string(s);
  std::vector<char32_t> buf;
  buf.reserve(s.size());
  for (size_t i = 0; i < s.size();) decompose(next_char(s, i), buf);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < buf.size();) {
    if (combining_class(buf[i]) == 0) { ++i; continue; }
    size_t j = i;
    while (j < buf.size() && combining_class(buf[j]) != 0) ++j;
    std::stable_sort(buf.begin() + i, buf.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition (UAX #15): a character combines with the last starter unless a
  // character of equal or higher class (or a starter) stands between them.
  if (!buf.empty()) {
    size_t starter_pos = 0, out = 1;
    char32_t starter = buf[0];
    bool have_starter = combining_class(starter) == 0;
    int last_class = have_starter ? 0 : 256;
    for (size_t i = 1; i < buf.size(); ++i) {
      char32_t ch = buf[i];
      int ch_class = combining_class(ch);
      char32_t composite = have_starter ? compose(starter, ch) : 0;
      if (composite && (last_class < ch_class || last_class == 0)) {
        buf[starter_pos] = composite;
        starter = composite;
      } else {
        if (ch_class == 0) {
          starter_pos = out;
          starter = ch;
          have_starter = true;
        }
        last_class = ch_class;
        buf[out++] = ch;
      }
    }
    buf.resize(out);
  }
  std::string result;
  result.reserve(s.size());
  for (char32_t cp : buf) append_utf8(result, cp);
  return result;
}

}  // namespace nanovllm::unicode
