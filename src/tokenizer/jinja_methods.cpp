#include "tokenizer/jinja_methods.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_utf8.h"

namespace nanovllm::jinja {
namespace {

const std::string* opt_string(const Value* v, const char* what) {
  if (!v || v->is_none()) return nullptr;
  if (!v->is_string()) throw RuntimeError(std::string(what) + " arg must be None or str");
  return &v->as_string();
}

int64_t opt_int(const Value* v, int64_t def) {
  if (!v || v->is_none()) return def;
  if (!v->is_int() && !v->is_bool())
    throw RuntimeError("'" + type_name(*v) + "' object cannot be interpreted as an integer");
  return v->as_int();
}

const std::string& need_string(const Value& v, const char* what) {
  if (!v.is_string()) throw RuntimeError(std::string(what) + " must be str, not " + type_name(v));
  return v.as_string();
}

// str.startswith / endswith with an optional [start:end] window.
Value affix_test(const std::string& s, const CallArgs& args, bool prefix) {
  const auto a = bind_args(args, {"prefix", "start", "end"}, prefix ? "startswith" : "endswith");
  if (!a[0])
    throw RuntimeError(std::string(prefix ? "startswith" : "endswith") + "() takes at least 1 argument (0 given)");
  std::string window = s;
  if (a[1] || a[2])
    window =
        slice(Value::string(s), a[1] ? *a[1] : Value::none(), a[2] ? *a[2] : Value::none(), Value::none()).as_string();
  List candidates = a[0]->is_tuple() ? a[0]->items() : List{*a[0]};
  for (const Value& c : candidates) {
    if (!c.is_string())
      throw RuntimeError(std::string(prefix ? "startswith" : "endswith") +
                         " first arg must be str or a tuple of str, not " + type_name(c));
    const std::string& p = c.as_string();
    if (p.size() <= window.size() &&
        (prefix ? window.compare(0, p.size(), p) == 0 : window.compare(window.size() - p.size(), p.size(), p) == 0))
      return Value::boolean(true);
  }
  return Value::boolean(false);
}

}  // namespace

std::string python_replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts repl before every code point and at the end
    const auto offsets = code_point_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
        check_text_size(out.size());
      }
      out.append(s, offsets[i], offsets[i + 1] - offsets[i]);
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += repl;
    check_text_size(out.size());
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos);
  return out;
}

List python_splitlines(const std::string& s, bool keepends) {
  List lines;
  size_t start = 0;
  for (size_t pos = 0; pos < s.size();) {
    const size_t at = pos;
    const uint32_t cp = next_code_point(s, pos);
    const bool br = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 ||
                    cp == 0x2028 || cp == 0x2029;
    if (!br) continue;
    if (cp == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
    lines.push_back(Value::string(s.substr(start, (keepends ? pos : at) - start)));
    start = pos;
  }
  if (start < s.size()) lines.push_back(Value::string(s.substr(start)));
  return lines;
}

namespace {

bool all_chars(const std::string& s, bool (*pred)(unsigned char)) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!pred(c)) return false;
  return true;
}

std::string pad(const std::string& s, int64_t width, char align, const std::string& fill) {
  const int64_t len = static_cast<int64_t>(code_point_count(s));
  if (width <= len) return s;
  const int64_t total = width - len;
  check_text_size(static_cast<size_t>(total) * fill.size() + s.size());
  int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2;
  if (align == 'c') left = total / 2 + (total & width & 1);  // str.center's rounding
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < total - left; ++i) out += fill;
  return out;
}

// Python's str.format: auto and explicit positional fields, keyword fields, !r/!s, and specs.
std::string str_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      throw RuntimeError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw RuntimeError("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec, conversion;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = field.substr(bang + 1);
      field.resize(bang);
    }
    const size_t name_end = std::min(field.find('.'), field.find('['));
    const std::string name = field.substr(0, name_end);
    Value v;
    if (name.empty() || std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      const size_t idx = name.empty() ? auto_index++ : static_cast<size_t>(parse_small_int(name, "format index"));
      if (idx >= args.positional.size())
        throw RuntimeError("Replacement index " + std::to_string(idx) + " out of range for positional args tuple");
      v = args.positional[idx];
    } else {
      bool found = false;
      for (const auto& [k, val] : args.keyword) {
        if (k == name) {
          v = val;
          found = true;
        }
      }
      if (!found) throw RuntimeError("'" + name + "'");
    }
    for (size_t p = name_end; p < field.size();) {
      if (field[p] == '.') {
        size_t e = std::min(field.find('.', p + 1), field.find('[', p + 1));
        if (e == std::string::npos) e = field.size();
        v = get_attribute(v, field.substr(p + 1, e - p - 1));
        p = e;
      } else {
        const size_t e = field.find(']', p);
        if (e == std::string::npos) throw RuntimeError("Missing ']' in format string");
        const std::string key = field.substr(p + 1, e - p - 1);
        const bool numeric =
            !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        v = get_item(v, numeric ? Value::integer(parse_small_int(key, "format index")) : Value::string(key));
        p = e + 1;
      }
    }
    if (conversion == "r" || conversion == "a")
      v = Value::string(repr(v));
    else if (conversion == "s")
      v = Value::string(to_str(v));
    else if (!conversion.empty())
      throw RuntimeError("Unknown conversion specifier " + conversion);
    out += format_spec(v, spec);
  }
  return out;
}

Value call_string_method(const std::string& s, const std::string& name, const CallArgs& args) {
  if (name == "startswith" || name == "endswith") return affix_test(s, args, name == "startswith");
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const auto a = bind_args(args, {"chars"}, name.c_str());
    return Value::string(python_strip(s, opt_string(a[0], name.c_str()), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const auto a = bind_args(args, {"sep", "maxsplit"}, name.c_str());
    const std::string* sep = opt_string(a[0], "sep");
    if (sep && sep->empty()) throw RuntimeError("empty separator");
    const int64_t maxsplit = opt_int(a[1], -1);
    List parts;
    for (auto& p : name == "split" ? python_split(s, sep, maxsplit) : python_rsplit(s, sep, maxsplit))
      parts.push_back(Value::string(std::move(p)));
    return Value::list(std::move(parts));
  }
  if (name == "upper") return Value::string(unicode_upper(s));
  if (name == "lower") return Value::string(unicode_lower(s));
  if (name == "title") return Value::string(python_title(s));
  if (name == "capitalize") return Value::string(python_capitalize(s));
  if (name == "replace") {
    const auto a = bind_args(args, {"old", "new", "count"}, "replace");
    if (!a[0] || !a[1]) throw RuntimeError("replace() takes at least 2 arguments");
    return Value::string(python_replace(s, need_string(*a[0], "replace() argument 1"),
                                        need_string(*a[1], "replace() argument 2"), opt_int(a[2], -1)));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    const auto a = bind_args(args, {"sub"}, name.c_str());
    if (!a[0]) throw RuntimeError(name + "() takes at least 1 argument (0 given)");
    const std::string& sub = need_string(*a[0], "must be str");
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(code_point_count(s)) + 1);
      int64_t n = 0;
      for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) ++n;
      return Value::integer(n);
    }
    const size_t hit = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (hit == std::string::npos) {
      if (name == "find" || name == "rfind") return Value::integer(-1);
      throw RuntimeError("substring not found");
    }
    return Value::integer(static_cast<int64_t>(code_point_count(std::string_view(s).substr(0, hit))));
  }
  if (name == "join") {
    const auto a = bind_args(args, {"iterable"}, "join");
    if (!a[0]) throw RuntimeError("join() takes exactly one argument (0 given)");
    std::string out;
    size_t i = 0;
    for (const Value& item : iterate(*a[0])) {
      if (!item.is_string())
        throw RuntimeError("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(item) +
                           " found");
      if (i++) out += s;
      out += item.as_string();
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(str_format(s, args));
  if (name == "splitlines") {
    const auto a = bind_args(args, {"keepends"}, "splitlines");
    return Value::list(python_splitlines(s, a[0] && truthy(*a[0])));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const auto a = bind_args(args, {"affix"}, name.c_str());
    if (!a[0]) throw RuntimeError(name + "() takes exactly one argument (0 given)");
    const std::string& p = need_string(*a[0], (name + "() argument").c_str());
    if (name == "removeprefix") return Value::string(s.compare(0, p.size(), p) == 0 ? s.substr(p.size()) : s);
    const bool ends = p.size() <= s.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
    return Value::string(ends ? s.substr(0, s.size() - p.size()) : s);
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    const auto a = bind_args(args, {"width", "fillchar"}, name.c_str());
    const std::string fill = a[1] ? need_string(*a[1], "fillchar") : " ";
    return Value::string(pad(s, opt_int(a[0], 0), name == "center" ? 'c' : name == "ljust" ? '<' : '>', fill));
  }
  bind_args(args, {}, name.c_str());
  if (name == "isdigit") return Value::boolean(all_chars(s, [](unsigned char c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha")
    return Value::boolean(all_chars(s, [](unsigned char c) { return std::isalpha(c) != 0 || c >= 0x80; }));
  if (name == "isalnum")
    return Value::boolean(all_chars(s, [](unsigned char c) { return std::isalnum(c) != 0 || c >= 0x80; }));
  if (name == "isspace") return Value::boolean(!s.empty() && python_strip(s, nullptr, true, true).empty());
  if (name == "islower") return Value::boolean(python_islower(s));
  if (name == "isupper") return Value::boolean(python_isupper(s));
  throw RuntimeError("'str' object has no attribute '" + name + "'");
}

Value call_dict_method(const Value& obj, const std::string& name, const CallArgs& args) {
  const Dict& d = obj.as_dict();
  if (name == "get") {
    const auto a = bind_args(args, {"key", "default"}, "get");
    if (!a[0]) throw RuntimeError("get expected at least 1 argument, got 0");
    const Value* v = d.find(*a[0]);
    return v ? *v : a[1] ? *a[1] : Value::none();
  }
  bind_args(args, {}, name.c_str());
  List out;
  for (const auto& [k, v] : d.entries) {
    if (name == "items")
      out.push_back(Value::tuple({k, v}));
    else
      out.push_back(name == "keys" ? k : v);
  }
  return Value::list(std::move(out));
}

Value call_list_method(const Value& obj, const std::string& name, const CallArgs& args) {
  const auto a = bind_args(args, {"value"}, name.c_str());
  if (!a[0]) throw RuntimeError(name + "() takes exactly one argument (0 given)");
  const List& items = obj.items();
  int64_t n = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!equals(items[i], *a[0])) continue;
    if (name == "index") return Value::integer(static_cast<int64_t>(i));
    ++n;
  }
  if (name == "index") throw RuntimeError(repr(*a[0]) + " is not in list");
  return Value::integer(n);
}

bool is_one_of(const std::string& name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

}  // namespace

std::optional<Value> bound_method(const Value& obj, const std::string& name) {
  using Call = std::function<Value(const CallArgs&)>;
  Call call;
  if (obj.is_string() &&
      is_one_of(name, {"startswith",   "endswith", "strip",  "lstrip",     "rstrip",  "split",      "rsplit",
                       "upper",        "lower",    "title",  "capitalize", "replace", "find",       "rfind",
                       "index",        "rindex",   "count",  "join",       "format",  "splitlines", "removeprefix",
                       "removesuffix", "center",   "ljust",  "rjust",      "isdigit", "isalpha",    "isalnum",
                       "isspace",      "islower",  "isupper"})) {
    call = [s = obj.as_string(), name](const CallArgs& args) { return call_string_method(s, name, args); };
  } else if (obj.is_dict() && is_one_of(name, {"get", "items", "keys", "values"})) {
    call = [obj, name](const CallArgs& args) { return call_dict_method(obj, name, args); };
  } else if (obj.is_sequence() && is_one_of(name, {"index", "count"})) {
    call = [obj, name](const CallArgs& args) { return call_list_method(obj, name, args); };
  } else if ((obj.is_dict() && is_one_of(name, {"pop", "popitem", "setdefault", "update", "clear"})) ||
             (obj.is_list() &&
              is_one_of(name, {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"}))) {
    // jinja2's ImmutableSandboxedEnvironment refuses calls that would modify the value.
    const std::string msg = "access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.";
    call = [msg](const CallArgs&) -> Value { throw RuntimeError(msg); };
  } else {
    return std::nullopt;
  }
  auto fn = std::make_shared<Function>();
  fn->name = name;
  fn->call = [call = std::move(call)](Interpreter&, CallArgs& args) { return call(args); };
  return Value::function(std::move(fn));
}

std::string format_spec(const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  // [[fill]align][sign][#][0][width][,|_][.precision][type]
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  size_t first_len = 1;
  while (first_len < spec.size() && (static_cast<unsigned char>(spec[first_len]) & 0xC0) == 0x80) ++first_len;
  if (spec.size() > first_len && is_align(spec[first_len])) {
    fill = spec.substr(0, first_len);
    align = spec[first_len];
    i = first_len + 1;
  } else if (is_align(spec[0])) {
    align = spec[0];
    i = 1;
  }
  char sign = '-';
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  if (i < spec.size() && spec[i] == '#') ++i;
  if (i < spec.size() && spec[i] == '0') {
    if (!align) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  std::string digits;
  while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i]))) digits += spec[i++];
  const int64_t width = digits.empty() ? 0 : parse_small_int(digits, "width");
  char grouping = 0;
  if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) grouping = spec[i++];
  int precision = -1;
  if (i < spec.size() && spec[i] == '.') {
    precision = 0;
    ++i;
    while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])))
      precision = precision * 10 + (spec[i++] - '0');
  }
  char type = i < spec.size() ? spec[i++] : 0;
  if (i != spec.size()) throw RuntimeError("Invalid format specifier '" + spec + "'");
  std::string body;
  bool negative = false;
  if (v.is_string()) {
    if (type && type != 's')
      throw RuntimeError(std::string("Unknown format code '") + type + "' for object of type 'str'");
    body = v.as_string();
    if (precision >= 0) {
      const auto offsets = code_point_offsets(body);
      if (static_cast<size_t>(precision) + 1 < offsets.size()) body.resize(offsets[precision]);
    }
    return pad(body, width, align ? align : '<', fill);
  }
  if (!v.is_number()) return pad(to_str(v), width, align ? align : '<', fill);
  const bool integral =
      !v.is_float() && (type == 0 || type == 'd' || type == 'x' || type == 'X' || type == 'o' || type == 'b');
  char buf[512];
  if (integral) {
    const int64_t n = v.as_int();
    negative = n < 0;
    const uint64_t mag = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
    if (type == 'x' || type == 'X' || type == 'o') {
      std::snprintf(buf, sizeof buf,
                    type == 'x'   ? "%llx"
                    : type == 'X' ? "%llX"
                                  : "%llo",
                    static_cast<unsigned long long>(mag));
      body = buf;
    } else if (type == 'b') {
      for (uint64_t m = mag; m; m >>= 1) body.insert(body.begin(), static_cast<char>('0' + (m & 1)));
      if (body.empty()) body = "0";
    } else {
      body = std::to_string(mag);
    }
  } else {
    const double d = v.as_double();
    negative = std::signbit(d) && !std::isnan(d);
    const double mag = std::fabs(d);
    if (type == 0 && precision < 0) {
      body = format_float(mag);
    } else if (type == '%') {
      std::snprintf(buf, sizeof buf, "%.*f%%", precision < 0 ? 6 : precision, mag * 100);
      body = buf;
    } else {
      const char t = type == 0 ? 'g' : type;
      if (t != 'f' && t != 'F' && t != 'e' && t != 'E' && t != 'g' && t != 'G' && t != 'd')
        throw RuntimeError(std::string("Unknown format code '") + t + "' for object of type 'float'");
      if (t == 'd') throw RuntimeError("Unknown format code 'd' for object of type 'float'");
      const std::string f = std::string("%.*") + t;
      std::snprintf(buf, sizeof buf, f.c_str(), precision < 0 ? 6 : precision, mag);
      body = buf;
    }
  }
  if (grouping) {
    const size_t dot = std::min(body.find('.'), body.size());
    for (int64_t k = static_cast<int64_t>(dot) - 3; k > 0; k -= 3) body.insert(static_cast<size_t>(k), 1, grouping);
  }
  const std::string sign_text = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
  if (align == '=') {
    const int64_t len = static_cast<int64_t>(sign_text.size() + body.size());
    std::string padding;
    for (int64_t k = len; k < width; ++k) padding += fill;
    return sign_text + padding + body;
  }
  return pad(sign_text + body, width, align ? align : '>', fill);
}

std::string percent_format(const std::string& fmt, const Value& args) {
  // Python's printf-style str % args: a tuple supplies positional values, a dict named ones.
  const List values = args.is_tuple() ? args.items() : List{args};
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw RuntimeError("incomplete format");
    Value v;
    bool have_value = false;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) throw RuntimeError("incomplete format key");
      if (!args.is_dict()) throw RuntimeError("format requires a mapping");
      const Value* found = args.as_dict().find(fmt.substr(i + 1, close - i - 1));
      if (!found) throw RuntimeError("'" + fmt.substr(i + 1, close - i - 1) + "'");
      v = *found;
      have_value = used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    std::string width, precision;
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) width += fmt[i++];
    if (i < fmt.size() && fmt[i] == '.') {
      precision = ".";
      ++i;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) precision += fmt[i++];
    }
    // Numbers go through snprintf into a fixed buffer: keep their width and precision small.
    const auto check_printf = [&] {
      if (!width.empty() && parse_small_int(width, "width") > 400) throw RuntimeError("format width over 400");
      if (precision.size() > 1 && parse_small_int(precision.substr(1), "precision") > 400)
        throw RuntimeError("format precision over 400");
    };
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) throw RuntimeError("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!have_value) {
      if (next >= values.size()) throw RuntimeError("not enough arguments for format string");
      v = values[next++];
    }
    std::string piece;
    char buf[512];
    switch (conv) {
      case 's': piece = to_str(v); break;
      case 'r':
      case 'a': piece = repr(v); break;
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (!v.is_number())
          throw RuntimeError(std::string("%") + conv + " format: a real number is required, not " + type_name(v));
        const auto n =
            static_cast<long long>(v.is_float() ? std::trunc(v.as_double()) : static_cast<double>(v.as_int()));
        const char c = conv == 'i' || conv == 'u' ? 'd' : conv;
        std::snprintf(buf, sizeof buf, ("%" + flags + width + precision + "ll" + c).c_str(), n);
        piece = buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (!v.is_number()) throw RuntimeError("must be real number, not " + type_name(v));
        check_printf();
        std::snprintf(buf, sizeof buf, ("%" + flags + width + precision + conv).c_str(), v.as_double());
        piece = buf;
        break;
      default: throw RuntimeError(std::string("unsupported format character '") + conv + "'");
    }
    if (conv == 's' || conv == 'r' || conv == 'a') {
      if (precision.size() > 1) {
        const auto offsets = code_point_offsets(piece);
        const auto p = static_cast<size_t>(parse_small_int(precision.substr(1), "precision"));
        if (p + 1 < offsets.size()) piece.resize(offsets[p]);
      }
      if (!width.empty())
        piece = pad(piece, parse_small_int(width, "width"), flags.find('-') != std::string::npos ? '<' : '>', " ");
    }
    out += piece;
  }
  // CPython skips this check when the argument supports indexing (a list or a dict).
  if (!used_mapping && !args.is_dict() && !args.is_list() && next < values.size())
    throw RuntimeError("not all arguments converted during string formatting");
  return out;
}

}  // namespace nanovllm::jinja
