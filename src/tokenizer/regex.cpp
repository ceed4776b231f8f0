#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#define PCRE2_STATIC
#include <pcre2.h>

#include <cstring>

#include "runtime/error.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

namespace {

// Oniguruma's Unicode classes, as PCRE2 class bodies (without the brackets).
constexpr const char* kOnigSpace = "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
constexpr const char* kOnigWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
constexpr const char* kOnigHex = "0-9a-fA-F";

// One match-data block and JIT stack per thread, reused across calls: allocating them per
// search would cost more than most searches.
struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_context* context = nullptr;
  ThreadMatchState() {
    data = pcre2_match_data_create(16, nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(data);
  }
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

std::string Regex::translate_from_oniguruma(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      const char* body = nullptr;
      bool negated = false;
      switch (e) {
        case 's': body = kOnigSpace; break;
        case 'S': body = kOnigSpace; negated = true; break;
        case 'w': body = kOnigWord; break;
        case 'W': body = kOnigWord; negated = true; break;
        case 'h': body = kOnigHex; break;
        case 'H': body = kOnigHex; negated = true; break;
        default: break;
      }
      if (body && !in_class) {
        out += negated ? "[^" : "[";
        out += body;
        out += "]";
      } else if (body && !negated) {
        out += body;  // inside a class: splice the class body in
      } else {
        // Negated classes inside a class have no plain spelling; keep PCRE2's meaning.
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      // A ']' (after an optional '^') right after '[' is a literal, not the class's end.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, bool literal) : pattern_(pattern) {
  if (literal && !pattern.empty()) {
    is_literal_ = true;
    literal_ = pattern;
    return;
  }
  std::string translated = literal ? pattern : translate_from_oniguruma(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (literal) options |= PCRE2_LITERAL;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   options, &err, &err_offset, nullptr);
  if (!code) {
    throw Error("tokenizer: cannot compile regex '" + pattern + "': " + pcre2_message(err) + " at offset " +
                std::to_string(err_offset));
  }
  compiled_ = std::make_unique<Compiled>();
  compiled_->code = code;
  compiled_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

size_t Regex::char_length(std::string_view text, size_t i) {
  int n = unicode::utf8_sequence_length(static_cast<unsigned char>(text[i]));
  return n > 0 ? n : 1;
}

bool Regex::search(std::string_view text, size_t start, Match& m) const {
  if (is_literal_) {
    size_t pos = literal_.size() == 1 ? text.find(literal_[0], start) : text.find(literal_, start);
    if (pos == std::string_view::npos) return false;
    m = {pos, pos + literal_.size()};
    return true;
  }
  ThreadMatchState& st = thread_state();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = compiled_->jit
               ? pcre2_jit_match(compiled_->code, subject, text.size(), start, 0, st.data, st.context)
               : pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    throw Error("tokenizer: regex '" + pattern_ + "' failed on a " + std::to_string(text.size()) +
                "-byte input: " + pcre2_message(rc));
  }
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  m = {static_cast<size_t>(ov[0]), static_cast<size_t>(ov[1])};
  // \K can make a match end before it starts; HF's engine has no \K, treat it as empty.
  if (m.end < m.start) m.end = m.start;
  return true;
}

std::vector<Regex::Piece> Regex::find_matches(std::string_view text) const {
  std::vector<Piece> pieces;
  if (text.empty()) {
    pieces.push_back({0, 0, false});
    return pieces;
  }
  size_t prev = 0;
  for_each_match(text, [&](Match m) {
    if (prev != m.start) pieces.push_back({prev, m.start, false});
    pieces.push_back({m.start, m.end, true});
    prev = m.end;
  });
  if (prev != text.size()) pieces.push_back({prev, text.size(), false});
  return pieces;
}

}  // namespace nanovllm
