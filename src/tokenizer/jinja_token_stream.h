// The token cursor the Jinja parsers share: lookahead, expectations, and syntax errors that
// name the line and column of the offending token.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/error.h"
#include "tokenizer/jinja_lexer.h"

namespace nanovllm::jinja {

class TokenStream {
 public:
  explicit TokenStream(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  const Token& current() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }

  static bool is_op(const Token& t, std::string_view op) { return t.type == TokenType::Operator && t.text == op; }
  static bool is_name(const Token& t, std::string_view name) { return t.type == TokenType::Name && t.text == name; }
  static bool is_name_in(const Token& t, std::initializer_list<std::string_view> names) {
    return t.type == TokenType::Name && std::find(names.begin(), names.end(), t.text) != names.end();
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::Data: return "template data";
      case TokenType::BlockBegin: return "begin of statement block";
      case TokenType::BlockEnd: return "end of statement block";
      case TokenType::VariableBegin: return "begin of print statement";
      case TokenType::VariableEnd: return "end of print statement";
      case TokenType::End: return "end of template";
      case TokenType::String: return "string";
      case TokenType::Integer: return "integer";
      case TokenType::Float: return "float";
      default: return t.text;
    }
  }

  [[noreturn]] static void fail_at(const Token& t, const std::string& msg) {
    throw Error("chat template syntax error at " + location(t.line, t.column) + ": " + msg);
  }

  void expect_op(std::string_view op) {
    if (!is_op(current(), op))
      fail_at(current(), "expected token '" + std::string(op) + "', got '" + describe(current()) + "'");
    next();
  }
  const Token& expect_name() {
    if (current().type != TokenType::Name)
      fail_at(current(), "expected token 'name', got '" + describe(current()) + "'");
    return next();
  }
  void expect_name(std::string_view name) {
    if (!is_name(current(), name))
      fail_at(current(), "expected token '" + std::string(name) + "', got '" + describe(current()) + "'");
    next();
  }
  void expect_block_end() {
    if (current().type != TokenType::BlockEnd)
      fail_at(current(), "expected token 'end of statement block', got '" + describe(current()) + "'");
    next();
  }

  // Recursion guard for the recursive-descent parsers: a template nested deeper than any real
  // one ("((((...", "not not not ...", if inside if ...) is an error, not a stack overflow.
  class Nesting {
   public:
    explicit Nesting(TokenStream& ts) : ts_(ts) {
      if (++ts_.depth_ > kMaxDepth) ts_.fail_at(ts_.current(), "template nested too deeply");
    }
    ~Nesting() { --ts_.depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    TokenStream& ts_;
  };

 private:
  static constexpr int kMaxDepth = 200;
  std::vector<Token> tokens_;  // ends with an End token
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace nanovllm::jinja
