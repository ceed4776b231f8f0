// The pre-tokenizer and normalizer regexes of tokenizer.json, on PCRE2 (UTF + UCP, JIT).
//
// Hugging Face runs these patterns on Oniguruma, so two things follow Oniguruma, not PCRE2:
//  - the meaning of \s \S \w \W \h \H, which differ between the engines, is rewritten to
//    explicit classes with Oniguruma's Unicode meaning (PCRE2's \s also takes U+180E; its \w
//    lacks marks; Oniguruma's \h is a hex digit);
//  - the iteration over matches: after an empty match, the next search starts one character
//    later, and an empty match right where the previous match ended is skipped.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nanovllm {

class Regex {
 public:
  // Compiles `pattern` (or, with literal = true, matches `pattern` as plain text). Throws
  // nanovllm::Error naming the pattern when PCRE2 refuses it.
  explicit Regex(const std::string& pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  struct Match {
    size_t start, end;
  };

  // Every match in `text`, in order, with Oniguruma's find_iter semantics. `text` must be valid
  // UTF-8 (the caller has checked it). Calls fn(Match) for each; fn returns nothing.
  template <class Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    size_t last_end = 0;
    bool have_last = false;
    size_t last_match_end = 0;
    Match m;
    while (last_end <= text.size()) {
      if (!search(text, last_end, m)) return;
      if (m.start == m.end && have_last && last_match_end == m.end) {
        last_end += last_end < text.size() ? char_length(text, last_end) : 1;
        continue;
      }
      last_end = m.end;
      last_match_end = m.end;
      have_last = true;
      fn(m);
    }
  }

  // The HF Pattern::find_matches view: the whole of `text` as consecutive (range, is_match)
  // pieces. Empty text gives one empty non-match piece.
  struct Piece {
    size_t start, end;
    bool is_match;
  };
  std::vector<Piece> find_matches(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

  // The pattern with \s \S \w \W \h \H rewritten to Oniguruma's meaning (exposed for tests).
  static std::string translate_from_oniguruma(const std::string& pattern);

 private:
  bool search(std::string_view text, size_t start, Match& m) const;
  static size_t char_length(std::string_view text, size_t i);

  std::string pattern_;
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
  std::string literal_;  // non-empty for a literal pattern: searched without PCRE2
  bool is_literal_ = false;
};

}  // namespace nanovllm
