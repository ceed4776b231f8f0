// The Jinja interpreter: walks a parsed template with a set of global variables and returns
// the rendered text. Scoping follows jinja2: `set` inside `if` writes to the enclosing scope,
// every for-loop iteration starts a fresh scope (so a `set` in the loop body never outlives its
// iteration: the reason templates use namespace()), macros see their arguments and the
// template's top-level variables.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace nanovllm::jinja {

class Interpreter {
 public:
  // globals: the render's variables and functions; looked up after every template scope.
  explicit Interpreter(const Dict& globals);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Body& body);

  Value eval(const Expr& e);
  Value call(const Value& callee, CallArgs& args);

  // namespace() objects are the one mutable value, so the one way to make a reference cycle
  // (`{% set ns.me = [ns] %}`); the interpreter empties them all when it is done.
  void track(const std::shared_ptr<Namespace>& ns) { namespaces_.push_back(ns); }

 private:
  enum class Flow { Normal, Break, Continue };
  struct Scope {
    std::vector<std::pair<std::string, Value>> vars;
  };

  Flow exec(const Body& body);
  Flow exec(const Stmt& s);
  void exec_for(const Stmt& s);
  void exec_set(const Stmt& s);
  std::string capture(const Body& body);
  Value define_macro(const Stmt& s);
  Value call_macro(const Stmt& macro, CallArgs& args);

  Value eval_node(const Expr& e);
  Value eval_filter(const Expr& e, const Value* block_text);
  CallArgs eval_args(const Expr& e, size_t first_positional);
  Value compare(const Expr& e);

  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v);
  void assign_targets(const Stmt& s, const std::vector<std::string>& targets, const Value& v);

  const Dict& globals_;
  std::vector<Scope> scopes_;  // [0] is the template's top level
  size_t scope_floor_ = 0;     // a macro body sees scopes_[floor..] and scopes_[0]
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  int64_t steps_ = 0;
  std::vector<std::weak_ptr<Namespace>> namespaces_;
};

}  // namespace nanovllm::jinja
