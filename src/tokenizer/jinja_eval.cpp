#include "tokenizer/jinja_eval.h"

#include "runtime/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_lexer.h"

namespace nanovllm::jinja {
namespace {

// Deep enough for any real template; shallow enough that a recursive macro cannot overflow
// the C++ stack.
constexpr int kMaxCallDepth = 64;
// Statements a render may execute: real templates run thousands; nested range() loops could
// otherwise run for hours.
constexpr int64_t kMaxSteps = 20'000'000;

[[noreturn]] void fail_at(int line, int column, const std::string& msg) {
  throw Error("chat template error at " + location(line, column) + ": " + msg);
}

Value make_loop(const List& items, size_t i) {
  const auto n = static_cast<int64_t>(items.size());
  const auto idx = static_cast<int64_t>(i);
  Dict loop;
  loop.entries.reserve(12);
  loop.entries.emplace_back(Value::string("index0"), Value::integer(idx));
  loop.entries.emplace_back(Value::string("index"), Value::integer(idx + 1));
  loop.entries.emplace_back(Value::string("revindex0"), Value::integer(n - idx - 1));
  loop.entries.emplace_back(Value::string("revindex"), Value::integer(n - idx));
  loop.entries.emplace_back(Value::string("first"), Value::boolean(idx == 0));
  loop.entries.emplace_back(Value::string("last"), Value::boolean(idx == n - 1));
  loop.entries.emplace_back(Value::string("length"), Value::integer(n));
  loop.entries.emplace_back(Value::string("depth0"), Value::integer(0));
  loop.entries.emplace_back(Value::string("depth"), Value::integer(1));
  loop.entries.emplace_back(Value::string("previtem"),
                            i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
  loop.entries.emplace_back(Value::string("nextitem"),
                            i + 1 < items.size() ? items[i + 1] : Value::undefined("there is no next item"));
  auto cycle = std::make_shared<Function>();
  cycle->name = "cycle";
  cycle->call = [idx](Interpreter&, CallArgs& args) -> Value {
    if (args.positional.empty()) throw RuntimeError("no items for cycling given");
    return args.positional[static_cast<size_t>(idx) % args.positional.size()];
  };
  loop.entries.emplace_back(Value::string("cycle"), Value::function(std::move(cycle)));
  return Value::dict(std::move(loop));
}

}  // namespace

Interpreter::Interpreter(const Dict& globals) : globals_(globals) { scopes_.emplace_back(); }

Interpreter::~Interpreter() {
  for (const auto& weak : namespaces_) {
    if (auto ns = weak.lock()) {
      Dict attrs = std::move(ns->attrs);  // destroyed after the namespace is detached from it
      ns->attrs.entries.clear();
    }
  }
}

std::string Interpreter::render(const Body& body) {
  std::string out;
  out_ = &out;
  exec(body);
  out_ = nullptr;
  return out;
}

// ---- statements ----

Interpreter::Flow Interpreter::exec(const Body& body) {
  for (const auto& s : body) {
    const Flow f = exec(*s);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  if (++steps_ > kMaxSteps) fail_at(s.line, s.column, "template ran more than " + std::to_string(kMaxSteps) + " steps");
  switch (s.kind) {
    case StmtKind::Text: *out_ += s.text; break;
    case StmtKind::Output:
      *out_ += to_str(eval(*s.expr));
      if (out_->size() > kMaxTextBytes)
        fail_at(s.line, s.column, "output over " + std::to_string(kMaxTextBytes) + " bytes");
      break;
    case StmtKind::If:
      for (const auto& [cond, body] : s.branches)
        if (truthy(eval(*cond))) return exec(body);
      return exec(s.else_body);
    case StmtKind::For: exec_for(s); break;
    case StmtKind::Set: exec_set(s); break;
    case StmtKind::SetBlock: {
      Value text = Value::string(capture(s.body));
      assign(s.targets[0], s.expr ? eval_filter(*s.expr, &text) : text);
      break;
    }
    case StmtKind::Macro: assign(s.name, define_macro(s)); break;
    case StmtKind::With: {
      std::vector<std::pair<std::string, Value>> values;
      for (const auto& [name, expr] : s.params) values.emplace_back(name, eval(*expr));
      scopes_.push_back(Scope{std::move(values)});
      const Flow f = exec(s.body);
      scopes_.pop_back();
      return f;
    }
    case StmtKind::FilterBlock: {
      const Value text = Value::string(capture(s.body));
      *out_ += to_str(eval_filter(*s.expr, &text));
      break;
    }
    case StmtKind::Scope: return exec(s.body);
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
  }
  return Flow::Normal;
}

void Interpreter::exec_for(const Stmt& s) {
  const Value iterable = eval(*s.expr);
  List items;
  try {
    items = iterate(iterable);
  } catch (const RuntimeError& e) {
    fail_at(s.expr->line, s.expr->column, e.what());
  }
  if (s.condition) {  // `for x in xs if cond`: loop.length and friends count what passes
    List kept;
    for (const Value& item : items) {
      scopes_.emplace_back();
      assign_targets(s, s.targets, item);
      const bool keep = truthy(eval(*s.condition));
      scopes_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    scopes_.emplace_back();
    assign_targets(s, s.targets, items[i]);
    scopes_.back().vars.emplace_back("loop", make_loop(items, i));
    const Flow f = exec(s.body);
    scopes_.pop_back();
    if (f == Flow::Break) break;
  }
  if (items.empty() && !s.else_body.empty()) {
    scopes_.emplace_back();
    exec(s.else_body);
    scopes_.pop_back();
  }
}

void Interpreter::exec_set(const Stmt& s) {
  Value v = eval(*s.expr);
  if (s.attr.empty()) {
    assign_targets(s, s.targets, v);
    return;
  }
  const Value ns = lookup(s.targets[0]);
  if (!ns.is_namespace()) fail_at(s.line, s.column, "cannot assign attribute on non-namespace object");
  ns.as_namespace().attrs.set(Value::string(s.attr), std::move(v));
}

void Interpreter::assign_targets(const Stmt& s, const std::vector<std::string>& targets, const Value& v) {
  if (!s.unpack) {
    assign(targets[0], v);
    return;
  }
  List parts;
  try {
    parts = iterate(v);
  } catch (const RuntimeError&) {
    fail_at(s.line, s.column, "cannot unpack non-iterable " + type_name(v) + " object");
  }
  if (parts.size() != targets.size()) {
    fail_at(s.line, s.column,
            parts.size() > targets.size()
                ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                : "not enough values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                      std::to_string(parts.size()) + ")");
  }
  for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], parts[i]);
}

std::string Interpreter::capture(const Body& body) {
  std::string text;
  std::string* saved = out_;
  out_ = &text;
  scopes_.emplace_back();  // a block set's body has its own scope in jinja2
  try {
    exec(body);
  } catch (...) {
    scopes_.pop_back();
    out_ = saved;
    throw;
  }
  scopes_.pop_back();
  out_ = saved;
  return text;
}

Value Interpreter::define_macro(const Stmt& s) {
  auto fn = std::make_shared<Function>();
  fn->name = s.name;
  const Stmt* macro = &s;
  fn->call = [macro](Interpreter& interp, CallArgs& args) { return interp.call_macro(*macro, args); };
  return Value::function(std::move(fn));
}

Value Interpreter::call_macro(const Stmt& macro, CallArgs& args) {
  if (args.positional.size() > macro.params.size())
    throw RuntimeError("macro '" + macro.name + "' takes not more than " + std::to_string(macro.params.size()) +
                       " argument(s)");
  if (++call_depth_ > kMaxCallDepth) {
    --call_depth_;
    throw RuntimeError("macro calls nested deeper than " + std::to_string(kMaxCallDepth));
  }
  const size_t saved_floor = scope_floor_;
  scopes_.emplace_back();
  scope_floor_ = scopes_.size() - 1;
  std::string text;
  std::string* saved_out = out_;
  out_ = &text;
  auto restore = [&] {
    out_ = saved_out;
    scopes_.pop_back();
    scope_floor_ = saved_floor;
    --call_depth_;
  };
  try {
    for (size_t i = 0; i < macro.params.size(); ++i) {
      const auto& [name, def] = macro.params[i];
      const Value* given = i < args.positional.size() ? &args.positional[i] : nullptr;
      for (const auto& [k, v] : args.keyword)
        if (k == name) given = &v;
      assign(name, given ? *given : def ? eval(*def) : Value::undefined("parameter '" + name + "' was not provided"));
    }
    for (const auto& [k, v] : args.keyword) {
      bool known = false;
      for (const auto& p : macro.params) known |= p.first == k;
      if (!known) throw RuntimeError("macro '" + macro.name + "' takes no keyword argument '" + k + "'");
    }
    exec(macro.body);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return Value::string(std::move(text));
}

// ---- names ----

Value Interpreter::lookup(const std::string& name) const {
  for (size_t i = scopes_.size(); i-- > scope_floor_;) {
    for (auto it = scopes_[i].vars.rbegin(); it != scopes_[i].vars.rend(); ++it)
      if (it->first == name) return it->second;
  }
  if (scope_floor_ > 0) {
    for (const auto& [k, v] : scopes_[0].vars)
      if (k == name) return v;
  }
  if (const Value* v = globals_.find(name)) return *v;
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::assign(const std::string& name, Value v) {
  auto& vars = scopes_.back().vars;
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

// ---- expressions ----

Value Interpreter::eval(const Expr& e) {
  try {
    return eval_node(e);
  } catch (const RuntimeError& err) {
    fail_at(e.line, e.column, err.what());
  }
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first_positional) {
  CallArgs args;
  for (size_t i = first_positional; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i]));
  for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v));
  return args;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (!callee.is_function()) throw RuntimeError("'" + type_name(callee) + "' object is not callable");
  return callee.as_function().call(*this, args);
}

Value Interpreter::eval_filter(const Expr& e, const Value* block_text) {
  const Value subject =
      e.children[0] ? (e.children[0]->kind == ExprKind::Filter && block_text ? eval_filter(*e.children[0], block_text)
                                                                             : eval(*e.children[0]))
                    : *block_text;
  const CallArgs args = eval_args(e, 1);
  try {
    return apply_filter(*this, e.name, subject, args);
  } catch (const RuntimeError& err) {
    fail_at(e.line, e.column, err.what());
  }
}

Value Interpreter::compare(const Expr& e) {
  Value left = eval(*e.children[0]);
  for (size_t i = 0; i < e.compare_ops.size(); ++i) {
    Value right = eval(*e.children[i + 1]);
    bool ok = false;
    switch (e.compare_ops[i]) {
      case CompareOp::Eq: ok = equals(left, right); break;
      case CompareOp::Ne: ok = !equals(left, right); break;
      case CompareOp::In: ok = contains(right, left); break;
      case CompareOp::NotIn: ok = !contains(right, left); break;
      default: {
        if (left.is_undefined()) fail_undefined(left);
        if (right.is_undefined()) fail_undefined(right);
        switch (e.compare_ops[i]) {
          case CompareOp::Lt: ok = less_than(left, right); break;
          case CompareOp::Le: ok = !less_than(right, left); break;
          case CompareOp::Gt: ok = less_than(right, left); break;
          default: ok = !less_than(left, right); break;
        }
      }
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval_node(const Expr& e) {
  switch (e.kind) {
    case ExprKind::Const: return e.value;
    case ExprKind::Name: return lookup(e.name);
    case ExprKind::List:
    case ExprKind::Tuple: {
      List items;
      items.reserve(e.children.size());
      for (const auto& c : e.children) items.push_back(eval(*c));
      return e.kind == ExprKind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) d.set(eval(*e.children[i]), eval(*e.children[i + 1]));
      return Value::dict(std::move(d));
    }
    case ExprKind::Getattr: return get_attribute(eval(*e.children[0]), e.name);
    case ExprKind::Getitem: {
      const Value obj = eval(*e.children[0]);
      const Expr& key = *e.children[1];
      if (key.kind == ExprKind::Slice) {
        auto part = [&](size_t i) { return key.children[i] ? eval(*key.children[i]) : Value::none(); };
        return slice(obj, part(0), part(1), part(2));
      }
      return get_item(obj, eval(key));
    }
    case ExprKind::Slice: throw RuntimeError("a slice outside of a subscript");
    case ExprKind::Call: {
      const Value callee = eval(*e.children[0]);
      CallArgs args = eval_args(e, 1);
      return call(callee, args);
    }
    case ExprKind::Filter: return eval_filter(e, nullptr);
    case ExprKind::Test: {
      const Value subject = eval(*e.children[0]);
      const CallArgs args = eval_args(e, 1);
      return Value::boolean(apply_test(*this, e.name, subject, args) != e.negated);
    }
    case ExprKind::Neg:
    case ExprKind::Pos: {
      const Value v = eval(*e.children[0]);
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_number())
        throw RuntimeError(std::string("bad operand type for unary ") + (e.kind == ExprKind::Neg ? "-" : "+") + ": '" +
                           type_name(v) + "'");
      if (e.kind == ExprKind::Pos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::floating(-v.as_double());
      return binary_op(BinaryOp::Sub, Value::integer(0), v);
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*e.children[0])));
    case ExprKind::And: {
      Value left = eval(*e.children[0]);
      return truthy(left) ? eval(*e.children[1]) : left;
    }
    case ExprKind::Or: {
      Value left = eval(*e.children[0]);
      return truthy(left) ? left : eval(*e.children[1]);
    }
    case ExprKind::Binary: return binary_op(e.op, eval(*e.children[0]), eval(*e.children[1]));
    case ExprKind::Concat: {
      std::string s;
      for (const auto& c : e.children) {
        s += to_str(eval(*c));
        check_text_size(s.size());
      }
      return Value::string(std::move(s));
    }
    case ExprKind::Compare: return compare(e);
    case ExprKind::CondExpr:
      if (truthy(eval(*e.children[0]))) return eval(*e.children[1]);
      if (e.children[2]) return eval(*e.children[2]);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
  }
  return Value();
}

}  // namespace nanovllm::jinja
