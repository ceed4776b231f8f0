// Jinja lexer: template text in, tokens out, with jinja2's whitespace control applied to the
// text between tags ({%- -%}, {{- -}}, {#- -#}, {%+ +%}, trim_blocks, lstrip_blocks) exactly as
// jinja2's regex lexer does it, and jinja2's source normalization (\r\n and \r become \n, one
// trailing newline is dropped unless keep_trailing_newline).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nanovllm::jinja {

struct LexerOptions {
  // jinja2's defaults are false; Hugging Face renders chat templates with both true.
  bool trim_blocks = false;
  bool lstrip_blocks = false;
  bool keep_trailing_newline = false;
};

enum class TokenType : uint8_t {
  Data,           // template text between tags, whitespace control already applied
  BlockBegin,     // {%
  BlockEnd,       // %}
  VariableBegin,  // {{
  VariableEnd,    // }}
  Name,
  String,  // text holds the unescaped value
  Integer,
  Float,
  Operator,  // text holds the operator: "+", "//", "==", "(", ...
  End,       // end of the template
};

struct Token {
  TokenType type;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in code points
};

// Throws Error("... at line L, column C") for text it cannot tokenize (unclosed tags, bad
// characters, unbalanced brackets, bad string escapes).
std::vector<Token> tokenize(std::string_view source, const LexerOptions& opts);

// Formats the location suffix every template error carries.
std::string location(int line, int column);

}  // namespace nanovllm::jinja
