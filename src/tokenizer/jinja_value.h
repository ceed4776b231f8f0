// The values of the Jinja interpreter, with Python's semantics: chat templates are Python
// expressions over JSON-like data, and jinja2 evaluates them as Python would (1 == 1.0 == True,
// str() of a list is its repr, an out-of-range index is Undefined, ...). Lists and dicts are
// immutable once built (the sandbox HF renders in forbids mutating them), so they are shared
// by pointer; namespace() objects are the one mutable value.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace nanovllm::jinja {

// A Python exception raised while rendering (TypeError, UndefinedError, ...). The interpreter
// catches it at the expression that raised it and rethrows an Error naming line and column.
class RuntimeError : public Error {
 public:
  using Error::Error;
};

class Value;
class Interpreter;
using List = std::vector<Value>;
struct Dict;
struct Namespace;
struct Function;
struct IteratorState;

class Value {
 public:
  // Iterator: what jinja2's lazy filters (map, select, selectattr, items, unique, batch, reverse
  // of a list) return, a Python generator. Computed eagerly here, but it behaves as one: always
  // true, no len(), not indexable, and iterating it once exhausts it.
  enum class Kind : uint8_t {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Tuple,
    Dict,
    Namespace,
    Function,
    Iterator
  };

  Value() = default;  // Undefined
  static Value undefined(std::string message) {
    Value v;
    v.str_ = std::move(message);
    return v;
  }
  static Value none() { return make(Kind::None); }
  static Value boolean(bool b) {
    Value v = make(Kind::Bool);
    v.int_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v = make(Kind::Int);
    v.int_ = i;
    return v;
  }
  static Value floating(double f) {
    Value v = make(Kind::Float);
    v.float_ = f;
    return v;
  }
  static Value string(std::string s) {
    Value v = make(Kind::String);
    v.str_ = std::move(s);
    return v;
  }
  static Value list(List items) { return sequence(std::move(items), Kind::List); }
  static Value tuple(List items) { return sequence(std::move(items), Kind::Tuple); }
  static Value dict(Dict d);
  static Value ns(std::shared_ptr<Namespace> n);
  static Value function(std::shared_ptr<const Function> f);
  static Value iterator(List items);
  static Value failed_iterator(std::string error);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  // Python's numbers include bool.
  bool is_number() const { return kind_ == Kind::Bool || kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::Tuple; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }
  bool is_function() const { return kind_ == Kind::Function; }
  bool is_iterator() const { return kind_ == Kind::Iterator; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }  // Bool or Int
  double as_double() const { return kind_ == Kind::Float ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return str_; }
  const std::string& undefined_message() const { return str_; }
  const List& items() const { return *list_; }
  const Dict& as_dict() const { return *dict_; }
  Namespace& as_namespace() const { return *ns_; }
  const Function& as_function() const { return *fn_; }
  IteratorState& as_iterator() const { return *iter_; }
  const void* identity() const;  // for `is sameas` and namespace/function equality

 private:
  static Value make(Kind k) {
    Value v;
    v.kind_ = k;
    return v;
  }
  static Value sequence(List items, Kind k);

  Kind kind_ = Kind::Undefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;  // String; for Undefined, the message an error reports when it is misused
  std::shared_ptr<const List> list_;
  std::shared_ptr<const Dict> dict_;
  std::shared_ptr<Namespace> ns_;
  std::shared_ptr<const Function> fn_;
  std::shared_ptr<IteratorState> iter_;
};

// An insertion-ordered mapping, like a Python dict. Lookup is a linear scan: template dicts
// are small, and Python equality (1 == 1.0 == True) decides which keys collide.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;
  void set(Value key, Value value);  // replaces an equal key in place, as Python does
};

struct Namespace {
  Dict attrs;
};

struct IteratorState {
  List items;
  size_t next = 0;    // items before it have been consumed
  std::string error;  // a generator raises when first advanced, not when made
  // Advances past the next item and returns it, or nullptr at the end; throws the error once.
  const Value* advance();
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Function {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// Python semantics.
bool truthy(const Value& v);
bool equals(const Value& a, const Value& b);
// Python's <: numbers, strings and sequences; throws Error (TypeError) for other pairs.
bool less_than(const Value& a, const Value& b);
std::string type_name(const Value& v);  // Python's type(v).__name__
std::string to_str(const Value& v);     // str(v); Undefined prints as ""
std::string repr(const Value& v);
std::string format_float(double f);  // float.__repr__
size_t length(const Value& v);       // len(v); throws for values without a length
// Iterating v as a for loop does: a dict yields its keys, a string its characters, Undefined
// nothing. Throws Error for values that are not iterable.
List iterate(const Value& v);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys), as HF's tojson filter calls it.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // None, or the string one level indents by
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonDumpOptions& opts);

// Throws Error past the nesting depth values may have.
void check_json_depth(int depth);

// JSON in: objects keep their key order when J is nlohmann::ordered_json.
template <class J>
Value from_json(const J& j, int depth = 0) {
  check_json_depth(depth);
  switch (j.type()) {
    case J::value_t::null: return Value::none();
    case J::value_t::boolean: return Value::boolean(j.template get<bool>());
    case J::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case J::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      return u <= static_cast<uint64_t>(INT64_MAX) ? Value::integer(static_cast<int64_t>(u))
                                                   : Value::floating(static_cast<double>(u));
    }
    case J::value_t::number_float: return Value::floating(j.template get<double>());
    case J::value_t::string: return Value::string(j.template get<std::string>());
    case J::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e, depth + 1));
      return Value::list(std::move(items));
    }
    case J::value_t::object: {
      Dict d;
      d.entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        d.entries.emplace_back(Value::string(it.key()), from_json(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default: return Value::none();  // binary and discarded values do not come from JSON text
  }
}

}  // namespace nanovllm::jinja
