#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <tuple>

#include "runtime/error.h"
#include "tokenizer/jinja_utf8.h"

namespace nanovllm::jinja {

std::string location(int line, int column) {
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

namespace {

// jinja2 splits the source on \r\n, \r and \n and joins the lines with \n.
std::string normalize_newlines(std::string_view source, bool keep_trailing_newline) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

constexpr std::array<std::string_view, 6> kTwoCharOperators = {"//", "**", "==", "!=", ">=", "<="};
constexpr std::string_view kOneCharOperators = "+-/*%~[](){}><=.:|,;";

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& opts)
      : src_(normalize_newlines(source, opts.keep_trailing_newline)), opts_(opts) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    bool line_starting = true;  // the previous match ended a line (jinja2's line_starting)
    while (pos_ < src_.size()) {
      size_t tag = src_.find('{', pos_);
      while (tag != std::string::npos &&
             !(tag + 1 < src_.size() && std::string_view("%{#").find(src_[tag + 1]) != std::string_view::npos))
        tag = src_.find('{', tag + 1);
      if (tag == std::string::npos) {
        emit_data(pos_, src_.substr(pos_));
        break;
      }
      const char kind = src_[tag + 1];
      size_t after = tag + 2;
      const char sign = after < src_.size() && (src_[after] == '-' || src_[after] == '+') ? src_[after] : 0;
      if (sign) ++after;
      size_t raw_end = 0;
      const bool raw = kind == '%' && match_raw_begin(after, raw_end);
      emit_data(pos_, strip_before_tag(src_.substr(pos_, tag - pos_), sign, kind != '{', line_starting));
      if (kind == '#') {
        pos_ = after;
        line_starting = lex_comment(tag);
      } else if (raw) {
        pos_ = raw_end;
        line_starting = lex_raw(tag, raw_end > 0 && src_[raw_end - 1] == '\n');
      } else {
        push(kind == '%' ? TokenType::BlockBegin : TokenType::VariableBegin, "", tag);
        pos_ = after;
        line_starting = lex_tag(kind == '%', tag);
      }
    }
    push(TokenType::End, "", src_.size());
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& msg, size_t offset) const {
    const auto [line, col] = line_col(offset);
    throw Error("chat template syntax error at " + location(line, col) + ": " + msg);
  }

  std::pair<int, int> line_col(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    const int line = static_cast<int>(it - line_starts_.begin()) + 1;
    const int col = static_cast<int>(code_point_count(std::string_view(src_).substr(*it, offset - *it))) + 1;
    return {line, col};
  }

  void push(TokenType type, std::string text, size_t offset) {
    Token t{type, std::move(text)};
    std::tie(t.line, t.column) = line_col(offset);
    tokens_.push_back(std::move(t));
  }

  void emit_data(size_t offset, std::string text) {
    if (!text.empty()) push(TokenType::Data, std::move(text), offset);
  }

  // jinja2's OptionalLStrip: "-" strips all whitespace before the tag; otherwise, with
  // lstrip_blocks, a block or comment tag alone on its line (after indentation) takes the
  // indentation with it. "+" keeps everything.
  std::string strip_before_tag(std::string text, char sign, bool strippable_tag, bool line_starting) const {
    if (sign == '-') return python_strip(text, nullptr, false, true);
    if (sign == '+' || !opts_.lstrip_blocks || !strippable_tag) return text;
    const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
        python_strip(text.substr(l_pos), nullptr, true, true).empty())
      text.resize(l_pos);
    return text;
  }

  size_t skip_space(size_t p) const {
    while (p < src_.size()) {
      size_t next = p;
      if (!is_python_space(next_code_point(src_, next))) break;
      p = next;
    }
    return p;
  }

  // After "{%" and its sign: \s* raw \s* (-%}\s* | %}). Sets end past the tag.
  bool match_raw_begin(size_t p, size_t& end) const {
    p = skip_space(p);
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
    p = skip_space(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) {
      end = skip_space(p + 3);
      return true;
    }
    if (src_.compare(p, 2, "%}") == 0) {
      end = p + 2;
      return true;
    }
    return false;
  }

  // The end of a block tag: "+%}", "-%}" plus whitespace, or "%}" plus one newline under
  // trim_blocks. Returns the offset past it, or npos.
  size_t match_block_end(size_t p) const {
    if (src_.compare(p, 3, "+%}") == 0) return p + 3;
    if (src_.compare(p, 3, "-%}") == 0) return skip_space(p + 3);
    if (src_.compare(p, 2, "%}") == 0)
      return p + 2 + (opts_.trim_blocks && p + 2 < src_.size() && src_[p + 2] == '\n' ? 1 : 0);
    return std::string::npos;
  }

  bool lex_comment(size_t begin) {
    size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) fail("Missing end of comment tag", begin);
    size_t end;
    if (close > pos_ && src_[close - 1] == '-')
      end = skip_space(close + 2);
    else if (close > pos_ && src_[close - 1] == '+')
      end = close + 2;
    else
      end = close + 2 + (opts_.trim_blocks && close + 2 < src_.size() && src_[close + 2] == '\n' ? 1 : 0);
    pos_ = end;
    return src_[end - 1] == '\n';
  }

  bool lex_raw(size_t begin, bool line_starting) {
    for (size_t p = src_.find("{%", pos_); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      const char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      q = skip_space(q);
      if (src_.compare(q, 6, "endraw") != 0) continue;
      const size_t end = match_block_end(skip_space(q + 6));
      if (end == std::string::npos) continue;
      emit_data(pos_, strip_before_tag(src_.substr(pos_, p - pos_), sign, true, line_starting));
      pos_ = end;
      return src_[end - 1] == '\n';
    }
    fail("Missing end of raw directive", begin);
  }

  // Tokens inside {% %} or {{ }}; returns whether the end tag consumed a newline.
  bool lex_tag(bool block, size_t begin) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size())
        fail(std::string("unexpected end of template, expected '") + (block ? "%}" : "}}") + "'", begin);
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block)
          end = match_block_end(pos_);
        else if (src_.compare(pos_, 3, "-}}") == 0)
          end = skip_space(pos_ + 3);
        else if (src_.compare(pos_, 2, "}}") == 0)
          end = pos_ + 2;
        if (end != std::string::npos) {
          push(block ? TokenType::BlockEnd : TokenType::VariableEnd, "", pos_);
          pos_ = end;
          return src_[end - 1] == '\n';
        }
      }
      const size_t start = pos_;
      const char c = src_[pos_];
      if (skip_space(pos_) != pos_) {
        pos_ = skip_space(pos_);
      } else if (is_digit(c)) {
        lex_number();
      } else if (is_name_start(c) || static_cast<unsigned char>(c) >= 0x80) {
        while (pos_ < src_.size() && (is_name_char(src_[pos_]) || static_cast<unsigned char>(src_[pos_]) >= 0x80))
          ++pos_;
        push(TokenType::Name, src_.substr(start, pos_ - start), start);
      } else if (c == '\'' || c == '"') {
        lex_string();
      } else {
        std::string op;
        for (auto two : kTwoCharOperators)
          if (src_.compare(pos_, 2, two) == 0) op = two;
        if (op.empty() && kOneCharOperators.find(c) != std::string_view::npos) op = std::string(1, c);
        if (op.empty()) fail(std::string("unexpected char '") + c + "'", start);
        if (op == "(" || op == "[" || op == "{") {
          balance.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
        } else if (op == ")" || op == "]" || op == "}") {
          if (balance.empty()) fail("unexpected '" + op + "'", start);
          if (balance.back() != op[0]) fail("unexpected '" + op + "', expected '" + balance.back() + "'", start);
          balance.pop_back();
        }
        pos_ += op.size();
        push(TokenType::Operator, op, start);
      }
    }
  }

  // jinja2's integer_re and float_re: digits with '_' separators, 0b/0o/0x prefixes, a
  // fraction that needs digits after the dot, and an exponent.
  void lex_number() {
    const size_t start = pos_;
    auto digits = [&](size_t p, auto accept) {
      size_t q = p;
      while (q < src_.size() &&
             (accept(src_[q]) || (src_[q] == '_' && q + 1 < src_.size() && accept(src_[q + 1]) && q > p)))
        ++q;
      return q;
    };
    auto dec = [](char ch) { return is_digit(ch); };
    if (src_[pos_] == '0' && pos_ + 1 < src_.size() &&
        std::string_view("bBoOxX").find(src_[pos_ + 1]) != std::string_view::npos) {
      const char base_char = static_cast<char>(src_[pos_ + 1] | 0x20);
      const int base = base_char == 'b' ? 2 : base_char == 'o' ? 8 : 16;
      auto accept = [base](char ch) {
        const int d = ch >= '0' && ch <= '9'                     ? ch - '0'
                      : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10
                                                                 : 99;
        return d < base;
      };
      size_t q = pos_ + 2;
      if (q < src_.size() && src_[q] == '_') ++q;
      const size_t end = digits(q, accept);
      if (end > q) {
        std::string text = src_.substr(pos_ + 2, end - pos_ - 2);
        text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
        Token t{TokenType::Integer, src_.substr(start, end - start)};
        t.int_value = std::strtoll(text.c_str(), nullptr, base);
        std::tie(t.line, t.column) = line_col(start);
        tokens_.push_back(std::move(t));
        pos_ = end;
        return;
      }
    }
    size_t end = digits(pos_, dec);
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
      end = digits(end + 1, dec);
      is_float = true;
    }
    if (end < src_.size() && (src_[end] | 0x20) == 'e') {
      size_t q = end + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        end = digits(q, dec);
        is_float = true;
      }
    }
    std::string text = src_.substr(start, end - start);
    std::string clean = text;
    clean.erase(std::remove(clean.begin(), clean.end(), '_'), clean.end());
    Token t{is_float ? TokenType::Float : TokenType::Integer, text};
    if (is_float) {
      t.float_value = std::strtod(clean.c_str(), nullptr);
    } else {
      errno = 0;
      t.int_value = std::strtoll(clean.c_str(), nullptr, 10);
      if (errno == ERANGE) fail("integer literal too large: " + text, start);
    }
    std::tie(t.line, t.column) = line_col(start);
    tokens_.push_back(std::move(t));
    pos_ = end;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  }

  // A quoted string, unescaped as Python's "unicode-escape" codec does it.
  void lex_string() {
    const size_t start = pos_;
    const char quote = src_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) fail("unexpected char '" + std::string(1, quote) + "'", start);
      const char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        value += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= src_.size()) fail("unexpected char '" + std::string(1, quote) + "'", start);
      const char e = src_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '\n': break;  // a line continuation
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            const int h = pos_ + k < src_.size() ? hex_value(src_[pos_ + k]) : -1;
            if (h < 0) fail(std::string("truncated \\") + e + " escape in string", start);
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          if (cp > 0x10FFFF) fail("illegal Unicode character in string", start);
          pos_ += n;
          append_utf8(value, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(src_[pos_++] - '0');
            append_utf8(value, cp);
          } else if (e == 'N') {
            fail("\\N{...} escapes are not supported", start);
          } else {
            value += '\\';  // Python keeps unknown escapes as written
            value += e;
          }
      }
    }
    push(TokenType::String, std::move(value), start);
  }

  std::string src_;
  LexerOptions opts_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexerOptions& opts) { return Lexer(source, opts).run(); }

}  // namespace nanovllm::jinja
