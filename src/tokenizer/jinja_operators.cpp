// Python's operators over Values, and jinja2's sandboxed attribute and item access.
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_utf8.h"

namespace nanovllm::jinja {

std::vector<const Value*> bind_args(const CallArgs& args, std::initializer_list<const char*> names,
                                    const char* function) {
  std::vector<const Value*> bound(names.size(), nullptr);
  if (args.positional.size() > names.size())
    throw RuntimeError(std::string(function) + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
                       std::to_string(args.positional.size()) + " given)");
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = &args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    size_t i = 0;
    for (const char* n : names) {
      if (key == n) break;
      ++i;
    }
    if (i == names.size())
      throw RuntimeError(std::string(function) + "() got an unexpected keyword argument '" + key + "'");
    if (bound[i]) throw RuntimeError(std::string(function) + "() got multiple values for argument '" + key + "'");
    bound[i] = &value;
  }
  return bound;
}

void fail_undefined(const Value& v) { throw RuntimeError(v.undefined_message()); }

void check_text_size(size_t bytes) {
  if (bytes > kMaxTextBytes)
    throw RuntimeError("string of " + std::to_string(bytes) + " bytes is over the limit of " +
                       std::to_string(kMaxTextBytes));
}

void check_list_size(size_t items) {
  if (items > kMaxListItems)
    throw RuntimeError("list of " + std::to_string(items) + " items is over the limit of " +
                       std::to_string(kMaxListItems));
}

int64_t parse_small_int(const std::string& digits, const char* what) {
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    throw RuntimeError(std::string("bad or too large ") + what + " '" + digits + "'");
  return std::stoll(digits);
}

namespace {

// jinja2's object_type_repr: how error messages name the type of an object.
std::string object_type(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_namespace()) return "jinja2.utils.Namespace object";
  return type_name(v) + " object";
}

Value no_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("'" + object_type(obj) + "' has no attribute '" + name + "'");
}

Value no_element(const Value& obj, const Value& key) {
  return Value::undefined(object_type(obj) + " has no element " + repr(key));
}

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
  throw RuntimeError(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" +
                     type_name(b) + "'");
}

// Python integers do not overflow; ours are 64-bit and say so instead of wrapping.
template <class Op>
int64_t checked(Op op, int64_t a, int64_t b) {
  int64_t r;
  if (op(a, b, &r)) throw RuntimeError("integer overflow (Python would promote to a big integer)");
  return r;
}
bool add_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

Value repeat(const Value& seq, int64_t n) {
  const size_t unit = seq.is_string() ? seq.as_string().size() : seq.items().size();
  if (n > 0 && unit > 0) {
    if (static_cast<uint64_t>(n) > (seq.is_string() ? kMaxTextBytes : kMaxListItems) / unit + 1)
      seq.is_string() ? check_text_size(kMaxTextBytes + 1) : check_list_size(kMaxListItems + 1);
    seq.is_string() ? check_text_size(unit * static_cast<size_t>(n)) : check_list_size(unit * static_cast<size_t>(n));
  }
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

double float_mod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  if (r == 0) r = std::copysign(0.0, b);
  return r;
}

}  // namespace

Value binary_op(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  const bool nums = a.is_number() && b.is_number();
  switch (op) {
    case BinaryOp::Add:
      if (ints) return Value::integer(checked(add_overflow, a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        check_text_size(a.as_string().size() + b.as_string().size());
        return Value::string(a.as_string() + b.as_string());
      }
      if (a.is_sequence() && a.kind() == b.kind()) {
        check_list_size(a.items().size() + b.items().size());
        List out = a.items();
        out.insert(out.end(), b.items().begin(), b.items().end());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      if (a.is_string() || a.is_sequence())
        throw RuntimeError("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " +
                           type_name(a));
      unsupported("+", a, b);
    case BinaryOp::Sub:
      if (ints) return Value::integer(checked(sub_overflow, a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() - b.as_double());
      unsupported("-", a, b);
    case BinaryOp::Mul:
      if (ints) return Value::integer(checked(mul_overflow, a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() * b.as_double());
      if ((a.is_string() || a.is_sequence()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
      if ((b.is_string() || b.is_sequence()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
      if (a.is_string() || a.is_sequence() || b.is_string() || b.is_sequence())
        throw RuntimeError("can't multiply sequence by non-int of type '" +
                           type_name(a.is_string() || a.is_sequence() ? b : a) + "'");
      unsupported("*", a, b);
    case BinaryOp::Div:
      if (!nums) unsupported("/", a, b);
      if (b.as_double() == 0) throw RuntimeError("division by zero");
      return Value::floating(a.as_double() / b.as_double());
    case BinaryOp::FloorDiv:
      if (!nums) unsupported("//", a, b);
      if (b.as_double() == 0)
        throw RuntimeError(ints ? "integer division or modulo by zero" : "float floor division by zero");
      if (ints) {
        if (a.as_int() == INT64_MIN && b.as_int() == -1) checked(sub_overflow, 0, INT64_MIN);
        int64_t q = a.as_int() / b.as_int();
        if (a.as_int() % b.as_int() != 0 && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
        return Value::integer(q);
      }
      {  // CPython's float_divmod
        const double x = a.as_double(), y = b.as_double();
        const double mod = std::fmod(x, y);
        double div = (x - mod) / y;
        if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1.0;
        double floordiv = std::copysign(0.0, x / y);
        if (div != 0) {
          floordiv = std::floor(div);
          if (div - floordiv > 0.5) floordiv += 1.0;
        }
        return Value::floating(floordiv);
      }
    case BinaryOp::Mod:
      if (a.is_string()) return Value::string(percent_format(a.as_string(), b));
      if (!nums) unsupported("%", a, b);
      if (b.as_double() == 0) throw RuntimeError(ints ? "integer division or modulo by zero" : "float modulo");
      if (ints) {
        if (b.as_int() == -1) return Value::integer(0);
        int64_t m = a.as_int() % b.as_int();
        if (m != 0 && ((m < 0) != (b.as_int() < 0))) m += b.as_int();
        return Value::integer(m);
      }
      return Value::floating(float_mod(a.as_double(), b.as_double()));
    case BinaryOp::Pow:
      if (!nums) unsupported("** or pow()", a, b);
      if (ints && b.as_int() >= 0) {  // square-and-multiply, every step overflow-checked
        int64_t result = 1, base = a.as_int();
        for (int64_t e = b.as_int(); e > 0; e >>= 1) {
          if (e & 1) result = checked(mul_overflow, result, base);
          if (e > 1) base = checked(mul_overflow, base, base);
        }
        return Value::integer(result);
      }
      if (a.as_double() == 0 && b.as_double() < 0) throw RuntimeError("0.0 cannot be raised to a negative power");
      return Value::floating(std::pow(a.as_double(), b.as_double()));
  }
  unsupported("?", a, b);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string())
        throw RuntimeError("'in <string>' requires string as left operand, not " + type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::List:
    case Value::Kind::Tuple:
      for (const Value& v : container.items())
        if (equals(v, item)) return true;
      return false;
    case Value::Kind::Dict:
      if (item.is_list() || item.is_dict() || item.is_namespace() || item.is_iterator())
        throw RuntimeError("unhashable type: '" + type_name(item) + "'");
      return container.as_dict().find(item) != nullptr;
    case Value::Kind::Iterator: {  // Python consumes a generator up to the match
      IteratorState& it = container.as_iterator();
      while (const Value* v = it.advance())
        if (equals(*v, item)) return true;
      return false;
    }
    default: throw RuntimeError("argument of type '" + type_name(container) + "' is not iterable");
  }
}

Value get_attribute(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_dict()) {
    // Python's getattr comes first: d.items is the method even when d has an "items" key.
    if (!name.empty() && name[0] != '_') {
      if (auto m = bound_method(obj, name)) return *m;
    }
    if (const Value* v = obj.as_dict().find(name)) return *v;
    return no_attribute(obj, name);
  }
  if (obj.is_namespace()) {
    if (const Value* v = obj.as_namespace().attrs.find(name)) return *v;
    return no_attribute(obj, name);
  }
  if (!name.empty() && name[0] != '_') {
    if (auto m = bound_method(obj, name)) return *m;
  }
  return no_attribute(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  const bool int_key = key.is_int() || key.is_bool();
  if ((obj.is_sequence() || obj.is_string()) && int_key) {
    const int64_t n = static_cast<int64_t>(obj.is_string() ? code_point_count(obj.as_string()) : obj.items().size());
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return no_element(obj, key);
    if (obj.is_sequence()) return obj.items()[static_cast<size_t>(i)];
    const auto offsets = code_point_offsets(obj.as_string());
    return Value::string(obj.as_string().substr(offsets[i], offsets[i + 1] - offsets[i]));
  }
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(key)) return *v;
  }
  if (key.is_string()) return get_attribute(obj, key.as_string());  // jinja2 falls back to getattr
  return no_element(obj, key);
}

Value slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (!obj.is_sequence() && !obj.is_string()) return Value::undefined(object_type(obj) + " has no element slice");
  auto index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none()) return std::nullopt;
    if (!v.is_int() && !v.is_bool())
      throw RuntimeError(std::string("slice ") + what + " must be integers or None or have an __index__ method");
    return v.as_int();
  };
  const std::optional<int64_t> step_opt = index(step_v, "indices");
  const int64_t step = step_opt.value_or(1);
  if (step == 0) throw RuntimeError("slice step cannot be zero");
  std::vector<size_t> offsets;
  int64_t n;
  if (obj.is_string()) {
    offsets = code_point_offsets(obj.as_string());
    n = static_cast<int64_t>(offsets.size()) - 1;
  } else {
    n = static_cast<int64_t>(obj.items().size());
  }
  auto adjust = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t i = *v;
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  const int64_t start = adjust(index(start_v, "indices"), step < 0 ? n - 1 : 0);
  const int64_t stop = adjust(index(stop_v, "indices"), step < 0 ? -1 : n);
  std::vector<int64_t> picks;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    picks.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  if (obj.is_string()) {
    std::string out;
    const std::string& s = obj.as_string();
    for (int64_t i : picks) out.append(s, offsets[i], offsets[i + 1] - offsets[i]);
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t i : picks) out.push_back(obj.items()[static_cast<size_t>(i)]);
  return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

}  // namespace nanovllm::jinja
