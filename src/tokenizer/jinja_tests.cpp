// jinja2's tests (`x is defined`, `x is string`, ...) and the global functions of Hugging
// Face's chat template environment.
#include <ctime>
#include <map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_utf8.h"

namespace nanovllm::jinja {
namespace {

using TestFn = bool (*)(Interpreter&, const Value&, const CallArgs&);

const Value& other(const CallArgs& args, const char* test) {
  const auto a = bind_args(args, {"other"}, test);
  if (!a[0]) throw RuntimeError(std::string(test) + "() missing 1 required positional argument");
  return *a[0];
}

bool compare_or_fail(const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  return less_than(a, b);
}

bool t_defined(Interpreter&, const Value& v, const CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Interpreter&, const Value& v, const CallArgs&) { return v.is_undefined(); }
bool t_none(Interpreter&, const Value& v, const CallArgs&) { return v.is_none(); }
bool t_boolean(Interpreter&, const Value& v, const CallArgs&) { return v.is_bool(); }
bool t_true(Interpreter&, const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_false(Interpreter&, const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_integer(Interpreter&, const Value& v, const CallArgs&) { return v.is_int(); }
bool t_float(Interpreter&, const Value& v, const CallArgs&) { return v.is_float(); }
bool t_number(Interpreter&, const Value& v, const CallArgs&) { return v.is_number(); }
bool t_string(Interpreter&, const Value& v, const CallArgs&) { return v.is_string(); }
bool t_mapping(Interpreter&, const Value& v, const CallArgs&) { return v.is_dict(); }
// Undefined defines __iter__, __len__ and __getitem__, so jinja2 calls it iterable and a sequence.
bool t_iterable(Interpreter&, const Value& v, const CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict() || v.is_iterator();
}
bool t_sequence(Interpreter&, const Value& v, const CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
}
bool t_callable(Interpreter&, const Value& v, const CallArgs&) { return v.is_function() || v.is_undefined(); }
bool t_escaped(Interpreter&, const Value&, const CallArgs&) { return false; }
bool t_lower(Interpreter&, const Value& v, const CallArgs&) { return python_islower(to_str(v)); }
bool t_upper(Interpreter&, const Value& v, const CallArgs&) { return python_isupper(to_str(v)); }
// value % 2 with Python's semantics: floats and bools qualify too.
bool t_odd(Interpreter&, const Value& v, const CallArgs&) {
  return equals(binary_op(BinaryOp::Mod, v, Value::integer(2)), Value::integer(1));
}
bool t_even(Interpreter&, const Value& v, const CallArgs&) {
  return equals(binary_op(BinaryOp::Mod, v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(Interpreter&, const Value& v, const CallArgs& a) {
  const Value r = binary_op(BinaryOp::Mod, v, other(a, "divisibleby"));
  return equals(r, Value::integer(0));
}
bool t_eq(Interpreter&, const Value& v, const CallArgs& a) { return equals(v, other(a, "eq")); }
bool t_ne(Interpreter&, const Value& v, const CallArgs& a) { return !equals(v, other(a, "ne")); }
bool t_lt(Interpreter&, const Value& v, const CallArgs& a) { return compare_or_fail(v, other(a, "lt")); }
bool t_le(Interpreter&, const Value& v, const CallArgs& a) { return !compare_or_fail(other(a, "le"), v); }
bool t_gt(Interpreter&, const Value& v, const CallArgs& a) { return compare_or_fail(other(a, "gt"), v); }
bool t_ge(Interpreter&, const Value& v, const CallArgs& a) { return !compare_or_fail(v, other(a, "ge")); }
bool t_in(Interpreter&, const Value& v, const CallArgs& a) { return contains(other(a, "in"), v); }
bool t_sameas(Interpreter&, const Value& v, const CallArgs& a) {
  const Value& o = other(a, "sameas");
  if (v.identity() || o.identity()) return v.identity() == o.identity();
  // Python's `is` on None and the bools is value identity; on other scalars we call equal
  // values identical (CPython interns small ints and short strings).
  return v.kind() == o.kind() && equals(v, o);
}
bool t_filter(Interpreter&, const Value& v, const CallArgs&) { return v.is_string() && has_filter(v.as_string()); }
bool t_test(Interpreter&, const Value& v, const CallArgs&) { return v.is_string() && has_test(v.as_string()); }

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"!=", t_ne},
      {"<", t_lt},
      {"<=", t_le},
      {"==", t_eq},
      {">", t_gt},
      {">=", t_ge},
      {"boolean", t_boolean},
      {"callable", t_callable},
      {"defined", t_defined},
      {"divisibleby", t_divisibleby},
      {"eq", t_eq},
      {"equalto", t_eq},
      {"escaped", t_escaped},
      {"even", t_even},
      {"false", t_false},
      {"filter", t_filter},
      {"float", t_float},
      {"ge", t_ge},
      {"greaterthan", t_gt},
      {"gt", t_gt},
      {"in", t_in},
      {"integer", t_integer},
      {"iterable", t_iterable},
      {"le", t_le},
      {"lessthan", t_lt},
      {"lower", t_lower},
      {"lt", t_lt},
      {"mapping", t_mapping},
      {"ne", t_ne},
      {"none", t_none},
      {"number", t_number},
      {"odd", t_odd},
      {"sameas", t_sameas},
      {"sequence", t_sequence},
      {"string", t_string},
      {"test", t_test},
      {"true", t_true},
      {"undefined", t_undefined},
      {"upper", t_upper},
  };
  return table;
}

void add_function(Dict& globals, const std::string& name, std::function<Value(Interpreter&, CallArgs&)> fn) {
  auto f = std::make_shared<Function>();
  f->name = name;
  f->call = std::move(fn);
  globals.set(Value::string(name), Value::function(std::move(f)));
}

}  // namespace

bool has_test(const std::string& name) { return tests().count(name) != 0; }

bool apply_test(Interpreter& interp, const std::string& name, const Value& subject, const CallArgs& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) throw RuntimeError("No test named '" + name + "'.");
  return it->second(interp, subject, args);
}

void add_builtin_globals(Dict& globals) {
  add_function(globals, "range", [](Interpreter&, CallArgs& args) -> Value {
    const auto a = bind_args(args, {"start", "stop", "step"}, "range");
    auto num = [](const Value* v, int64_t def) {
      if (!v) return def;
      if (!v->is_int() && !v->is_bool())
        throw RuntimeError("'" + type_name(*v) + "' object cannot be interpreted as an integer");
      return v->as_int();
    };
    int64_t start = 0, stop, step = num(a[2], 1);
    if (a[1]) {
      start = num(a[0], 0);
      stop = num(a[1], 0);
    } else {
      stop = num(a[0], 0);
    }
    if (step == 0) throw RuntimeError("range() arg 3 must not be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      // jinja2's sandbox caps ranges at MAX_RANGE items.
      if (out.size() >= 100000)
        throw RuntimeError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      out.push_back(Value::integer(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return Value::list(std::move(out));
  });
  auto make_dict = [](CallArgs& args) {
    Dict d;
    for (const Value& p : args.positional) {
      if (!p.is_dict()) throw RuntimeError("cannot convert " + type_name(p) + " to a dictionary");
      for (const auto& [k, v] : p.as_dict().entries) d.set(k, v);
    }
    for (const auto& [k, v] : args.keyword) d.set(Value::string(k), v);
    return d;
  };
  add_function(globals, "namespace", [make_dict](Interpreter& interp, CallArgs& args) {
    auto ns = std::make_shared<Namespace>();
    ns->attrs = make_dict(args);
    interp.track(ns);
    return Value::ns(std::move(ns));
  });
  add_function(globals, "dict", [make_dict](Interpreter&, CallArgs& args) { return Value::dict(make_dict(args)); });
  add_function(globals, "joiner", [](Interpreter&, CallArgs& args) {
    const auto a = bind_args(args, {"sep"}, "joiner");
    const std::string sep = a[0] ? to_str(*a[0]) : ", ";
    auto used = std::make_shared<bool>(false);
    auto f = std::make_shared<Function>();
    f->name = "joiner";
    f->call = [sep, used](Interpreter&, CallArgs&) { return Value::string(std::exchange(*used, true) ? sep : ""); };
    return Value::function(std::move(f));
  });
  // HF: raise_exception(message) raises jinja2's TemplateError(message). Thrown as a plain
  // Error so that the message reaches the caller exactly as the template wrote it.
  add_function(globals, "raise_exception", [](Interpreter&, CallArgs& args) -> Value {
    const auto a = bind_args(args, {"message"}, "raise_exception");
    throw Error(a[0] ? to_str(*a[0]) : "");
  });
  // HF: strftime_now(format) is datetime.now().strftime(format), in local time.
  add_function(globals, "strftime_now", [](Interpreter&, CallArgs& args) {
    const auto a = bind_args(args, {"format"}, "strftime_now");
    const std::string fmt = a[0] ? to_str(*a[0]) : "";
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[512];
    const size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &local);
    return Value::string(std::string(buf, n));
  });
}

}  // namespace nanovllm::jinja
