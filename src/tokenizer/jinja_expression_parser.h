// The expression half of the Jinja parser, with jinja2's grammar and precedence
// (jinja2/parser.py is the reference): condexpr < or < and < not < compare (==, in, not in, ...)
// < + - < ~ < * / // % < ** (left-associative) < unary - + < primary with postfix . [] () and
// filters and tests, so `-x|f` is f(-x) and `a ~ b + c` is a ~ (b + c).
#pragma once

#include <initializer_list>
#include <string_view>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_token_stream.h"

namespace nanovllm::jinja {

class ExpressionParser {
 public:
  explicit ExpressionParser(TokenStream& ts) : ts_(ts) {}

  // A comma-separated list becomes a Tuple, one expression stays itself. `simplified` parses
  // primaries only (assignment targets); extra_end names more tokens that end the list.
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, std::initializer_list<std::string_view> extra_end,
                      bool explicit_parentheses);
  // with_condexpr = false leaves `x if y else z` out, as in for-loop iterables and if tests.
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr parse_primary();
  // `| name(args)` chains; start_inline parses a first filter with no leading "|" (filter blocks).
  ExprPtr parse_filter(ExprPtr subject, bool start_inline);

 private:
  static ExprPtr node(ExprKind kind, const Token& at);
  ExprPtr parse_condexpr();
  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const;
  ExprPtr binary(ExprKind kind, const Token& at, ExprPtr left, ExprPtr right);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr arith(const Token& at, BinaryOp op, ExprPtr left, ExprPtr right);
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_filter_expr(ExprPtr e);
  ExprPtr parse_subscript(ExprPtr subject);
  ExprPtr parse_subscribed();
  void parse_call_args(Expr& e);
  ExprPtr parse_call(ExprPtr callee);
  ExprPtr parse_test(ExprPtr subject);

  TokenStream& ts_;
};

}  // namespace nanovllm::jinja
