// The syntax tree of a parsed Jinja template: expressions and statements, each with the line
// and column it starts at so that runtime errors can point into the template.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace nanovllm::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class ExprKind : uint8_t {
  Const,     // value
  Name,      // name
  List,      // children: the items
  Tuple,     // children: the items
  Dict,      // children: key, value, key, value, ...
  Getattr,   // children[0].name
  Getitem,   // children[0][children[1]]
  Slice,     // children: start, stop, step (nullptr when absent); only inside Getitem
  Call,      // children[0](children[1:], kwargs)
  Filter,    // children[0] | name(children[1:], kwargs); children[0] is nullptr in a filter block
  Test,      // children[0] is [not] name(children[1:], kwargs)
  Neg,       // -children[0]
  Pos,       // +children[0]
  Not,       // not children[0]
  Binary,    // children[0] op children[1]
  And,       // children[0] and children[1]
  Or,        // children[0] or children[1]
  Concat,    // children[0] ~ children[1] ~ ...
  Compare,   // children[0] compare_ops[0] children[1] compare_ops[1] children[2] ...
  CondExpr,  // children[1] if children[0] else children[2] (children[2] may be nullptr)
};

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr {
  ExprKind kind;
  int line = 0, column = 0;
  Value value;
  std::string name;
  BinaryOp op = BinaryOp::Add;
  bool negated = false;  // `is not`
  std::vector<CompareOp> compare_ops;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

enum class StmtKind : uint8_t {
  Text,         // text
  Output,       // {{ expr }}
  If,           // branches, else_body
  For,          // for targets in expr [if condition] body [else else_body]
  Set,          // set targets = expr; or set targets[0].attr = expr (namespace attribute)
  SetBlock,     // set targets[0] [| filter] body endset
  Macro,        // macro name(params) body endmacro
  With,         // with params body endwith
  FilterBlock,  // filter filter_expr body endfilter
  Scope,        // body only: HF's {% generation %} block
  Break,
  Continue,
};

struct Stmt {
  StmtKind kind;
  int line = 0, column = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;  // For's `if` filter
  std::vector<std::string> targets;
  bool unpack = false;                                  // targets came as a tuple, even of one name
  std::string attr;                                     // Set on a namespace attribute
  std::string name;                                     // Macro
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters (default may be nullptr); With
  std::vector<std::pair<ExprPtr, Body>> branches;       // If: condition, body
  Body body;
  Body else_body;
};

}  // namespace nanovllm::jinja
