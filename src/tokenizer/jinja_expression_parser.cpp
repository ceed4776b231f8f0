#include "tokenizer/jinja_expression_parser.h"

namespace nanovllm::jinja {

ExprPtr ExpressionParser::node(ExprKind kind, const Token& at) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = at.line;
  e->column = at.column;
  return e;
}

bool ExpressionParser::is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
  const Token& t = ts_.current();
  if (t.type == TokenType::VariableEnd || t.type == TokenType::BlockEnd || ts_.is_op(t, ")")) return true;
  return extra_end.size() && ts_.is_name_in(t, extra_end);
}

ExprPtr ExpressionParser::parse_tuple(bool simplified, bool with_condexpr,
                                      std::initializer_list<std::string_view> extra_end, bool explicit_parentheses) {
  const Token& at = ts_.current();
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) ts_.expect_op(",");
    if (is_tuple_end(extra_end)) break;
    items.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
    if (ts_.is_op(ts_.current(), ","))
      is_tuple = true;
    else
      break;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parentheses)
      ts_.fail_at(ts_.current(), "Expected an expression, got '" + ts_.describe(ts_.current()) + "'");
  }
  auto e = node(ExprKind::Tuple, at);
  e->children = std::move(items);
  return e;
}

ExprPtr ExpressionParser::parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

ExprPtr ExpressionParser::parse_condexpr() {
  ExprPtr expr = parse_or();
  while (ts_.is_name(ts_.current(), "if")) {
    const Token& at = ts_.next();
    auto e = node(ExprKind::CondExpr, at);
    e->children.push_back(parse_or());
    e->children.push_back(std::move(expr));
    if (ts_.is_name(ts_.current(), "else")) {
      ts_.next();
      e->children.push_back(parse_condexpr());
    } else {
      e->children.push_back(nullptr);
    }
    expr = std::move(e);
  }
  return expr;
}

ExprPtr ExpressionParser::binary(ExprKind kind, const Token& at, ExprPtr left, ExprPtr right) {
  auto e = node(kind, at);
  e->children.push_back(std::move(left));
  e->children.push_back(std::move(right));
  return e;
}

ExprPtr ExpressionParser::parse_or() {
  ExprPtr left = parse_and();
  while (ts_.is_name(ts_.current(), "or")) {
    const Token& at = ts_.next();
    left = binary(ExprKind::Or, at, std::move(left), parse_and());
  }
  return left;
}

ExprPtr ExpressionParser::parse_and() {
  ExprPtr left = parse_not();
  while (ts_.is_name(ts_.current(), "and")) {
    const Token& at = ts_.next();
    left = binary(ExprKind::And, at, std::move(left), parse_not());
  }
  return left;
}

ExprPtr ExpressionParser::parse_not() {
  const TokenStream::Nesting guard(ts_);
  if (ts_.is_name(ts_.current(), "not")) {
    auto e = node(ExprKind::Not, ts_.next());
    e->children.push_back(parse_not());
    return e;
  }
  return parse_compare();
}

ExprPtr ExpressionParser::parse_compare() {
  const Token& at = ts_.current();
  ExprPtr first = parse_math1();
  std::vector<CompareOp> ops;
  std::vector<ExprPtr> operands;
  while (true) {
    const Token& t = ts_.current();
    static const std::pair<std::string_view, CompareOp> kOps[] = {{"==", CompareOp::Eq}, {"!=", CompareOp::Ne},
                                                                  {"<", CompareOp::Lt},  {"<=", CompareOp::Le},
                                                                  {">", CompareOp::Gt},  {">=", CompareOp::Ge}};
    bool matched = false;
    for (const auto& [sym, op] : kOps) {
      if (ts_.is_op(t, sym)) {
        ts_.next();
        ops.push_back(op);
        matched = true;
        break;
      }
    }
    if (!matched) {
      if (ts_.is_name(t, "in")) {
        ts_.next();
        ops.push_back(CompareOp::In);
      } else if (ts_.is_name(t, "not") && ts_.is_name(ts_.look(), "in")) {
        ts_.next();
        ts_.next();
        ops.push_back(CompareOp::NotIn);
      } else {
        break;
      }
    }
    operands.push_back(parse_math1());
  }
  if (ops.empty()) return first;
  auto e = node(ExprKind::Compare, at);
  e->children.push_back(std::move(first));
  for (auto& o : operands) e->children.push_back(std::move(o));
  e->compare_ops = std::move(ops);
  return e;
}

ExprPtr ExpressionParser::arith(const Token& at, BinaryOp op, ExprPtr left, ExprPtr right) {
  auto e = binary(ExprKind::Binary, at, std::move(left), std::move(right));
  e->op = op;
  return e;
}

ExprPtr ExpressionParser::parse_math1() {
  ExprPtr left = parse_concat();
  while (ts_.is_op(ts_.current(), "+") || ts_.is_op(ts_.current(), "-")) {
    const Token& at = ts_.next();
    left = arith(at, at.text == "+" ? BinaryOp::Add : BinaryOp::Sub, std::move(left), parse_concat());
  }
  return left;
}

ExprPtr ExpressionParser::parse_concat() {
  const Token& at = ts_.current();
  ExprPtr first = parse_math2();
  if (!ts_.is_op(ts_.current(), "~")) return first;
  auto e = node(ExprKind::Concat, at);
  e->children.push_back(std::move(first));
  while (ts_.is_op(ts_.current(), "~")) {
    ts_.next();
    e->children.push_back(parse_math2());
  }
  return e;
}

ExprPtr ExpressionParser::parse_math2() {
  ExprPtr left = parse_pow();
  while (true) {
    const Token& t = ts_.current();
    BinaryOp op;
    if (ts_.is_op(t, "*"))
      op = BinaryOp::Mul;
    else if (ts_.is_op(t, "/"))
      op = BinaryOp::Div;
    else if (ts_.is_op(t, "//"))
      op = BinaryOp::FloorDiv;
    else if (ts_.is_op(t, "%"))
      op = BinaryOp::Mod;
    else
      break;
    const Token& at = ts_.next();
    left = arith(at, op, std::move(left), parse_pow());
  }
  return left;
}

ExprPtr ExpressionParser::parse_pow() {
  ExprPtr left = parse_unary(true);
  while (ts_.is_op(ts_.current(), "**")) {
    const Token& at = ts_.next();
    left = arith(at, BinaryOp::Pow, std::move(left), parse_unary(true));
  }
  return left;
}

ExprPtr ExpressionParser::parse_unary(bool with_filter) {
  const TokenStream::Nesting guard(ts_);
  ExprPtr e;
  if (ts_.is_op(ts_.current(), "-") || ts_.is_op(ts_.current(), "+")) {
    const Token& at = ts_.next();
    e = node(at.text == "-" ? ExprKind::Neg : ExprKind::Pos, at);
    e->children.push_back(parse_unary(false));
  } else {
    e = parse_primary();
  }
  e = parse_postfix(std::move(e));
  if (with_filter) e = parse_filter_expr(std::move(e));
  return e;
}

ExprPtr ExpressionParser::parse_primary() {
  const TokenStream::Nesting guard(ts_);
  const Token& t = ts_.current();
  switch (t.type) {
    case TokenType::Name: {
      ts_.next();
      auto e = node(ExprKind::Const, t);
      if (t.text == "true" || t.text == "True")
        e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False")
        e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None")
        e->value = Value::none();
      else {
        e->kind = ExprKind::Name;
        e->name = t.text;
      }
      return e;
    }
    case TokenType::String: {
      auto e = node(ExprKind::Const, t);
      std::string s;
      while (ts_.current().type == TokenType::String) s += ts_.next().text;  // adjacent literals join
      e->value = Value::string(std::move(s));
      return e;
    }
    case TokenType::Integer: {
      auto e = node(ExprKind::Const, ts_.next());
      e->value = Value::integer(t.int_value);
      return e;
    }
    case TokenType::Float: {
      auto e = node(ExprKind::Const, ts_.next());
      e->value = Value::floating(t.float_value);
      return e;
    }
    default: break;
  }
  if (ts_.is_op(t, "(")) {
    ts_.next();
    ExprPtr e = parse_tuple(false, true, {}, true);
    ts_.expect_op(")");
    return e;
  }
  if (ts_.is_op(t, "[")) {
    auto e = node(ExprKind::List, ts_.next());
    while (!ts_.is_op(ts_.current(), "]")) {
      if (!e->children.empty()) ts_.expect_op(",");
      if (ts_.is_op(ts_.current(), "]")) break;
      e->children.push_back(parse_expression(true));
    }
    ts_.next();
    return e;
  }
  if (ts_.is_op(t, "{")) {
    auto e = node(ExprKind::Dict, ts_.next());
    while (!ts_.is_op(ts_.current(), "}")) {
      if (!e->children.empty()) ts_.expect_op(",");
      if (ts_.is_op(ts_.current(), "}")) break;
      e->children.push_back(parse_expression(true));
      ts_.expect_op(":");
      e->children.push_back(parse_expression(true));
    }
    ts_.next();
    return e;
  }
  ts_.fail_at(t, "unexpected '" + ts_.describe(t) + "'");
}

ExprPtr ExpressionParser::parse_postfix(ExprPtr e) {
  while (true) {
    if (ts_.is_op(ts_.current(), ".") || ts_.is_op(ts_.current(), "["))
      e = parse_subscript(std::move(e));
    else if (ts_.is_op(ts_.current(), "("))
      e = parse_call(std::move(e));
    else
      return e;
  }
}

ExprPtr ExpressionParser::parse_filter_expr(ExprPtr e) {
  while (true) {
    if (ts_.is_op(ts_.current(), "|"))
      e = parse_filter(std::move(e), false);
    else if (ts_.is_name(ts_.current(), "is"))
      e = parse_test(std::move(e));
    else if (ts_.is_op(ts_.current(), "("))
      e = parse_call(std::move(e));
    else
      return e;
  }
}

ExprPtr ExpressionParser::parse_subscript(ExprPtr subject) {
  const Token& at = ts_.next();
  if (at.text == ".") {
    const Token& attr = ts_.next();
    if (attr.type == TokenType::Name) {
      auto e = node(ExprKind::Getattr, at);
      e->name = attr.text;
      e->children.push_back(std::move(subject));
      return e;
    }
    if (attr.type != TokenType::Integer) ts_.fail_at(attr, "expected name or number");
    auto e = node(ExprKind::Getitem, at);
    auto index = node(ExprKind::Const, attr);
    index->value = Value::integer(attr.int_value);
    e->children.push_back(std::move(subject));
    e->children.push_back(std::move(index));
    return e;
  }
  std::vector<ExprPtr> args;
  while (!ts_.is_op(ts_.current(), "]")) {
    if (!args.empty()) ts_.expect_op(",");
    args.push_back(parse_subscribed());
  }
  ts_.next();
  auto e = node(ExprKind::Getitem, at);
  e->children.push_back(std::move(subject));
  if (args.size() == 1) {
    e->children.push_back(std::move(args[0]));
  } else {
    auto tuple = node(ExprKind::Tuple, at);
    tuple->children = std::move(args);
    e->children.push_back(std::move(tuple));
  }
  return e;
}

ExprPtr ExpressionParser::parse_subscribed() {
  const Token& at = ts_.current();
  std::vector<ExprPtr> parts;  // start, stop, step
  if (ts_.is_op(ts_.current(), ":")) {
    ts_.next();
    parts.push_back(nullptr);
  } else {
    ExprPtr e = parse_expression(true);
    if (!ts_.is_op(ts_.current(), ":")) return e;
    ts_.next();
    parts.push_back(std::move(e));
  }
  if (ts_.is_op(ts_.current(), ":"))
    parts.push_back(nullptr);
  else if (!ts_.is_op(ts_.current(), "]") && !ts_.is_op(ts_.current(), ","))
    parts.push_back(parse_expression(true));
  else
    parts.push_back(nullptr);
  if (ts_.is_op(ts_.current(), ":")) {
    ts_.next();
    if (!ts_.is_op(ts_.current(), "]") && !ts_.is_op(ts_.current(), ","))
      parts.push_back(parse_expression(true));
    else
      parts.push_back(nullptr);
  } else {
    parts.push_back(nullptr);
  }
  auto e = node(ExprKind::Slice, at);
  e->children = std::move(parts);
  return e;
}

void ExpressionParser::parse_call_args(Expr& e) {
  ts_.expect_op("(");
  bool require_comma = false;
  while (!ts_.is_op(ts_.current(), ")")) {
    if (require_comma) {
      ts_.expect_op(",");
      if (ts_.is_op(ts_.current(), ")")) break;
    }
    if (ts_.is_op(ts_.current(), "*") || ts_.is_op(ts_.current(), "**"))
      ts_.fail_at(ts_.current(), "*args and **kwargs in calls are not supported");
    if (ts_.current().type == TokenType::Name && ts_.is_op(ts_.look(), "=")) {
      std::string key = ts_.next().text;
      ts_.next();
      e.kwargs.emplace_back(std::move(key), parse_expression(true));
    } else {
      if (!e.kwargs.empty()) ts_.fail_at(ts_.current(), "Invalid argument syntax");
      e.children.push_back(parse_expression(true));
    }
    require_comma = true;
  }
  ts_.next();
}

ExprPtr ExpressionParser::parse_call(ExprPtr callee) {
  auto e = node(ExprKind::Call, ts_.current());
  e->children.push_back(std::move(callee));
  parse_call_args(*e);
  return e;
}

ExprPtr ExpressionParser::parse_filter(ExprPtr subject, bool start_inline) {
  while (ts_.is_op(ts_.current(), "|") || start_inline) {
    if (!start_inline) ts_.next();
    const Token& name = ts_.expect_name();
    auto e = node(ExprKind::Filter, name);
    e->name = name.text;
    while (ts_.is_op(ts_.current(), ".")) {
      ts_.next();
      e->name += "." + ts_.expect_name().text;
    }
    e->children.push_back(std::move(subject));
    if (ts_.is_op(ts_.current(), "(")) parse_call_args(*e);
    subject = std::move(e);
    start_inline = false;
  }
  return subject;
}

ExprPtr ExpressionParser::parse_test(ExprPtr subject) {
  const Token& at = ts_.next();  // "is"
  auto e = node(ExprKind::Test, at);
  if (ts_.is_name(ts_.current(), "not")) {
    ts_.next();
    e->negated = true;
  }
  e->name = ts_.expect_name().text;
  while (ts_.is_op(ts_.current(), ".")) {
    ts_.next();
    e->name += "." + ts_.expect_name().text;
  }
  e->children.push_back(std::move(subject));
  const Token& t = ts_.current();
  if (ts_.is_op(t, "(")) {
    parse_call_args(*e);
  } else if ((t.type == TokenType::Name || t.type == TokenType::String || t.type == TokenType::Integer ||
              t.type == TokenType::Float || ts_.is_op(t, "(") || ts_.is_op(t, "[") || ts_.is_op(t, "{")) &&
             !ts_.is_name_in(t, {"else", "or", "and"})) {
    if (ts_.is_name(t, "is")) ts_.fail_at(t, "You cannot chain multiple tests with is");
    e->children.push_back(parse_postfix(parse_primary()));
  }
  return e;
}

}  // namespace nanovllm::jinja
