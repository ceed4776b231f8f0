// jinja2's filters, with Hugging Face's tojson (json.dumps with ensure_ascii=False and its
// indent/separators/sort_keys options, instead of jinja2's HTML-safe one).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <utility>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_utf8.h"

namespace nanovllm::jinja {
namespace {

using FilterFn = Value (*)(Interpreter&, const Value&, const CallArgs&);

std::string str_arg(const Value* v, const std::string& def) { return v ? to_str(*v) : def; }

// jinja2's make_attrgetter: "a.b.0" looks up each part with getitem (digits as integers).
Value get_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = get_item(v, digits ? Value::integer(parse_small_int(part, "index")) : Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// The sort key of jinja2's sort/unique/min/max/dictsort: an attribute, lower-cased when
// case-insensitive.
Value sort_key(const Value& item, const Value* attribute, bool case_sensitive) {
  Value key = attribute && !attribute->is_none() ? get_path(item, to_str(*attribute)) : item;
  if (!case_sensitive && key.is_string()) return Value::string(unicode_lower(key.as_string()));
  return key;
}

bool python_less(const Value& a, const Value& b) { return less_than(a, b); }

// jinja2's map/select/reject/items/unique/batch are generators: their errors surface when the
// result is first iterated (never, if a template only tests it for truth), and map/select/
// reject yield nothing at all for a false input.
template <class Compute>
Value lazy(Compute compute) {
  try {
    return Value::iterator(compute());
  } catch (const RuntimeError& e) {
    return Value::failed_iterator(e.what());
  }
}

Value f_length(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "length");
  return Value::integer(static_cast<int64_t>(length(v)));
}

List as_list(const Value& v) { return iterate(v); }

Value f_tojson(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonDumpOptions opts;
  opts.ensure_ascii = a[0] && truthy(*a[0]);
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_string())
      opts.indent = a[1]->as_string();
    else if (a[1]->is_int())
      opts.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, a[1]->as_int())), ' ');
    else
      throw RuntimeError("indent must be an int or a str");
  }
  if (a[2] && !a[2]->is_none()) {
    if (!a[2]->is_sequence() || a[2]->items().size() != 2 || !a[2]->items()[0].is_string() ||
        !a[2]->items()[1].is_string())
      throw RuntimeError("separators must be a pair of strings");
    opts.separators = std::make_pair(a[2]->items()[0].as_string(), a[2]->items()[1].as_string());
  }
  opts.sort_keys = a[3] && truthy(*a[3]);
  return Value::string(json_dumps(v, opts));
}

Value f_trim(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"chars"}, "trim");
  const std::string chars = a[0] && !a[0]->is_none() ? to_str(*a[0]) : "";
  return Value::string(python_strip(to_str(v), a[0] && !a[0]->is_none() ? &chars : nullptr, true, true));
}

Value f_join(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"d", "attribute"}, "join");
  const std::string sep = str_arg(a[0], "");
  std::string out;
  bool first = true;
  for (const Value& item : as_list(v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(a[1] && !a[1]->is_none() ? get_path(item, to_str(*a[1])) : item);
  }
  return Value::string(std::move(out));
}

Value f_first(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "first");
  if (v.is_iterator()) {  // next(iter(generator)) takes one item
    const Value* item = v.as_iterator().advance();
    return item ? *item : Value::undefined("No first item, sequence was empty.");
  }
  const List items = as_list(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "last");
  if (v.is_iterator()) throw RuntimeError("'generator' object is not reversible");
  const List items = as_list(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_string(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "string");
  return Value::string(to_str(v));
}

// Python's int(str, base): optional sign, underscores between digits, surrounding spaces.
std::optional<int64_t> parse_int(const std::string& text, int base) {
  std::string s = python_strip(text, nullptr, true, true);
  std::string digits;
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (base == 16 && s.compare(i, 2, "0x") == 0) i += 2;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_') continue;
    const int d = std::isdigit(static_cast<unsigned char>(s[i]))   ? s[i] - '0'
                  : std::isalpha(static_cast<unsigned char>(s[i])) ? (s[i] | 0x20) - 'a' + 10
                                                                   : 99;
    if (d >= base) return std::nullopt;
    digits += s[i];
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  const long long n = std::strtoll(digits.c_str(), nullptr, base);
  if (errno == ERANGE) return std::nullopt;
  return negative ? -n : n;
}

std::optional<double> parse_float(const std::string& text) {
  const std::string s = python_strip(text, nullptr, true, true);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

Value f_int(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"default", "base"}, "int");
  const Value def = a[0] ? *a[0] : Value::integer(0);
  if (v.is_undefined()) fail_undefined(v);  // int(Undefined) raises
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  const auto fits = [](double d) { return std::fabs(d) < 9.2e18; };  // NaN and inf do not
  if (v.is_float()) return fits(v.as_double()) ? Value::integer(static_cast<int64_t>(v.as_double())) : def;
  if (v.is_string()) {
    if (auto n = parse_int(v.as_string(), a[1] ? static_cast<int>(a[1]->as_int()) : 10)) return Value::integer(*n);
    if (auto d = parse_float(v.as_string()); d && fits(*d)) return Value::integer(static_cast<int64_t>(*d));
  }
  return def;
}

Value f_float(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"default"}, "float");
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) {
    if (auto d = parse_float(v.as_string())) return Value::floating(*d);
  }
  return a[0] ? *a[0] : Value::floating(0.0);
}

Value f_default(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"default_value", "boolean"}, "default");
  const bool boolean = a[1] && truthy(*a[1]);
  if (v.is_undefined() || (boolean && !truthy(v))) return a[0] ? *a[0] : Value::string("");
  return v;
}

Value f_list(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "list");
  return Value::list(as_list(v));
}

Value items_now(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args(args, {}, "items");
  if (v.is_undefined()) return Value::iterator({});
  if (!v.is_dict()) throw RuntimeError("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [k, val] : v.as_dict().entries) out.push_back(Value::tuple({k, val}));
  return Value::iterator(std::move(out));
}

Value f_dictsort(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "by", "reverse"}, "dictsort");
  if (!v.is_dict()) throw RuntimeError("Can only get item pairs from a mapping.");
  const bool case_sensitive = a[0] && truthy(*a[0]);
  const std::string by = str_arg(a[1], "key");
  if (by != "key" && by != "value") throw RuntimeError("You can only sort by either \"key\" or \"value\"");
  const size_t pos = by == "key" ? 0 : 1;
  List items;
  for (const auto& [k, val] : v.as_dict().entries) items.push_back(Value::tuple({k, val}));
  const bool reverse = a[2] && truthy(*a[2]);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = sort_key(x.items()[pos], nullptr, case_sensitive),
                ky = sort_key(y.items()[pos], nullptr, case_sensitive);
    return reverse ? python_less(ky, kx) : python_less(kx, ky);
  });
  return Value::list(std::move(items));
}

Value f_sort(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"reverse", "case_sensitive", "attribute"}, "sort");
  const bool reverse = a[0] && truthy(*a[0]);
  const bool case_sensitive = a[1] && truthy(*a[1]);
  List items = as_list(v);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = sort_key(x, a[2], case_sensitive), ky = sort_key(y, a[2], case_sensitive);
    return reverse ? python_less(ky, kx) : python_less(kx, ky);
  });
  return Value::list(std::move(items));
}

Value unique_now(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, "unique");
  const bool case_sensitive = a[0] && truthy(*a[0]);
  List out, seen;
  for (const Value& item : as_list(v)) {
    const Value key = sort_key(item, a[1], case_sensitive);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::iterator(std::move(out));
}

Value min_max(const Value& v, const CallArgs& args, bool want_max) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, want_max ? "max" : "min");
  const bool case_sensitive = a[0] && truthy(*a[0]);
  const List items = as_list(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const Value ki = sort_key(items[i], a[1], case_sensitive), kb = sort_key(items[best], a[1], case_sensitive);
    if (want_max ? python_less(kb, ki) : python_less(ki, kb)) best = i;
  }
  return items[best];
}
Value f_max(Interpreter&, const Value& v, const CallArgs& args) { return min_max(v, args, true); }
Value f_min(Interpreter&, const Value& v, const CallArgs& args) { return min_max(v, args, false); }

Value f_sum(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"attribute", "start"}, "sum");
  Value total = a[1] ? *a[1] : Value::integer(0);
  for (const Value& item : as_list(v))
    total = binary_op(BinaryOp::Add, total, a[0] && !a[0]->is_none() ? get_path(item, to_str(*a[0])) : item);
  return total;
}

Value map_now(Interpreter& interp, const Value& v, const CallArgs& args) {
  List out;
  const Value* attribute = nullptr;
  const Value* def = nullptr;
  for (const auto& [k, val] : args.keyword) {
    if (k == "attribute")
      attribute = &val;
    else if (k == "default")
      def = &val;
  }
  if (attribute) {
    for (const Value& item : as_list(v)) {
      Value x = get_path(item, to_str(*attribute));
      out.push_back(x.is_undefined() && def ? *def : x);
    }
    return Value::iterator(std::move(out));
  }
  if (args.positional.empty()) throw RuntimeError("map requires a filter argument");
  const std::string filter = to_str(args.positional[0]);
  CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, args.keyword};
  for (const Value& item : as_list(v)) out.push_back(apply_filter(interp, filter, item, rest));
  return Value::iterator(std::move(out));
}

// select/reject/selectattr/rejectattr: keep items whose (attribute's) test result is `keep`.
Value select_now(Interpreter& interp, const Value& v, const CallArgs& args, bool by_attribute, bool keep) {
  size_t first = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty()) throw RuntimeError("Missing parameter for attribute name");
    attribute = to_str(args.positional[0]);
    first = 1;
  }
  const bool has_test = args.positional.size() > first;
  const std::string test = has_test ? to_str(args.positional[first]) : "";
  CallArgs rest;
  if (has_test) rest.positional.assign(args.positional.begin() + static_cast<long>(first) + 1, args.positional.end());
  rest.keyword = args.keyword;
  List out;
  for (const Value& item : as_list(v)) {
    const Value subject = by_attribute ? get_path(item, attribute) : item;
    const bool passed = has_test ? apply_test(interp, test, subject, rest) : truthy(subject);
    if (passed == keep) out.push_back(item);
  }
  return Value::iterator(std::move(out));
}
Value select(Interpreter& i, const Value& v, const CallArgs& a, bool by_attribute, bool keep) {
  if (!truthy(v)) return Value::iterator({});
  return lazy([&] { return iterate(select_now(i, v, a, by_attribute, keep)); });
}
Value f_select(Interpreter& i, const Value& v, const CallArgs& a) { return select(i, v, a, false, true); }
Value f_reject(Interpreter& i, const Value& v, const CallArgs& a) { return select(i, v, a, false, false); }
Value f_selectattr(Interpreter& i, const Value& v, const CallArgs& a) { return select(i, v, a, true, true); }
Value f_rejectattr(Interpreter& i, const Value& v, const CallArgs& a) { return select(i, v, a, true, false); }
Value f_map(Interpreter& i, const Value& v, const CallArgs& a) {
  if (!truthy(v)) return Value::iterator({});
  return lazy([&] { return iterate(map_now(i, v, a)); });
}

Value f_upper(Interpreter&, const Value& v, const CallArgs&) { return Value::string(unicode_upper(to_str(v))); }
Value f_lower(Interpreter&, const Value& v, const CallArgs&) { return Value::string(unicode_lower(to_str(v))); }
// jinja2's title filter is not str.title(): it splits before runs of "-", whitespace, "(", "{",
// "[" and "<", then upper-cases each piece's first character and lower-cases the rest, so
// "they're" stays "They're" and "'quoted'" is unchanged.
Value f_title(Interpreter&, const Value& v, const CallArgs&) {
  const std::string s = to_str(v);
  auto separator = [](uint32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || is_python_space(cp);
  };
  std::string out;
  bool at_piece_start = true;
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    const uint32_t cp = next_code_point(s, pos);
    const std::string ch = s.substr(start, pos - start);
    if (separator(cp)) {
      out += ch;
      at_piece_start = true;
    } else {
      out += at_piece_start ? unicode_upper(ch) : unicode_lower(ch);
      at_piece_start = false;
    }
  }
  return Value::string(std::move(out));
}
Value f_capitalize(Interpreter&, const Value& v, const CallArgs&) {
  return Value::string(python_capitalize(to_str(v)));
}
Value f_safe(Interpreter&, const Value& v, const CallArgs&) { return v; }

Value f_escape(Interpreter&, const Value& v, const CallArgs&) {
  std::string out;
  for (char c : to_str(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return Value::string(std::move(out));
}

Value f_replace(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"old", "new", "count"}, "replace");
  if (!a[0] || !a[1]) throw RuntimeError("replace() takes at least 2 arguments");
  const int64_t count = a[2] && !a[2]->is_none() ? a[2]->as_int() : -1;
  return Value::string(python_replace(to_str(v), to_str(*a[0]), to_str(*a[1]), count));
}

Value f_reverse(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_string()) return slice(v, Value::none(), Value::none(), Value::integer(-1));
  // reversed() of a sequence is an iterator; a generator is not reversible, so jinja2 lists it.
  const bool reversible = v.is_sequence() || v.is_dict();
  List items = as_list(v);
  std::reverse(items.begin(), items.end());
  return reversible ? Value::iterator(std::move(items)) : Value::list(std::move(items));
}

Value f_abs(Interpreter&, const Value& v, const CallArgs&) {
  if (!v.is_number()) throw RuntimeError("bad operand type for abs(): '" + type_name(v) + "'");
  if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
  return v.as_int() < 0 ? binary_op(BinaryOp::Sub, Value::integer(0), v) : Value::integer(v.as_int());
}

Value f_round(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"precision", "method"}, "round");
  if (!v.is_number()) throw RuntimeError("type " + type_name(v) + " doesn't define __round__ method");
  const int64_t precision = a[0] ? a[0]->as_int() : 0;
  const std::string method = str_arg(a[1], "common");
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double();
  if (method == "ceil") return Value::floating(std::ceil(x * scale) / scale);
  if (method == "floor") return Value::floating(std::floor(x * scale) / scale);
  if (method != "common") throw RuntimeError("method must be common, ceil or floor");
  if (!v.is_float()) return Value::integer(v.as_int());  // Python's round(int, n) is an int
  // Python's round(): ties go to the even neighbour.
  const double y = x * scale;
  double r = std::round(y);
  if (std::fabs(y - std::trunc(y)) == 0.5) r = 2.0 * std::round(y / 2.0);
  return Value::floating(r / scale);
}

Value f_indent(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"width", "first", "blank"}, "indent");
  if (a[0] && !a[0]->is_string()) check_text_size(static_cast<size_t>(std::max<int64_t>(0, a[0]->as_int())));
  const std::string indention =
      a[0] && a[0]->is_string()
          ? a[0]->as_string()
          : std::string(a[0] ? static_cast<size_t>(std::max<int64_t>(0, a[0]->as_int())) : 4, ' ');
  const bool first = a[1] && truthy(*a[1]), blank = a[2] && truthy(*a[2]);
  if (!v.is_string()) throw RuntimeError("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  const List lines = python_splitlines(to_str(v) + "\n", false);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].as_string();
    if (i == 0) {
      out = line;
      continue;
    }
    out += "\n";
    if (blank || !line.empty()) out += indention;
    out += line;
  }
  if (first) out = indention + out;
  return Value::string(std::move(out));
}

Value f_center(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"width"}, "center");
  const std::string s = to_str(v);
  const int64_t width = a[0] ? a[0]->as_int() : 80;
  const int64_t len = static_cast<int64_t>(code_point_count(s));
  if (width <= len) return Value::string(s);
  const int64_t total = width - len, left = total / 2 + (total & width & 1);
  check_text_size(static_cast<size_t>(total) + s.size());
  return Value::string(std::string(static_cast<size_t>(left), ' ') + s +
                       std::string(static_cast<size_t>(total - left), ' '));
}

Value f_format(Interpreter&, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty())
    throw RuntimeError("can't handle positional and keyword arguments at the same time");
  if (!args.keyword.empty()) {
    Dict d;
    for (const auto& [k, val] : args.keyword) d.set(Value::string(k), val);
    return Value::string(percent_format(to_str(v), Value::dict(std::move(d))));
  }
  return Value::string(percent_format(to_str(v), Value::tuple(args.positional)));
}

Value f_wordcount(Interpreter&, const Value& v, const CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  const std::string s = to_str(v);
  for (size_t pos = 0; pos < s.size();) {
    const bool word = is_word_char(next_code_point(s, pos));
    if (word && !in_word) ++n;
    in_word = word;
  }
  return Value::integer(n);
}

Value batch_now(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"linecount", "fill_with"}, "batch");
  if (!a[0] || a[0]->as_int() <= 0) throw RuntimeError("batch size must be positive");
  const auto n = static_cast<size_t>(a[0]->as_int());
  List out, cur;
  for (const Value& item : as_list(v)) {
    cur.push_back(item);
    if (cur.size() == n) out.push_back(Value::list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (a[1] && !a[1]->is_none())
      while (cur.size() < n) cur.push_back(*a[1]);
    out.push_back(Value::list(std::move(cur)));
  }
  return Value::iterator(std::move(out));
}

Value f_attr(Interpreter&, const Value& v, const CallArgs& args) {
  const auto a = bind_args(args, {"name"}, "attr");
  return get_attribute(v, a[0] ? to_str(*a[0]) : "");
}

Value f_items(Interpreter& i, const Value& v, const CallArgs& a) {
  return lazy([&] { return iterate(items_now(i, v, a)); });
}
Value f_unique(Interpreter& i, const Value& v, const CallArgs& a) {
  return lazy([&] { return iterate(unique_now(i, v, a)); });
}
Value f_batch(Interpreter& i, const Value& v, const CallArgs& a) {
  return lazy([&] { return iterate(batch_now(i, v, a)); });
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_escape},
      {"format", f_format},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"sort", f_sort},
      {"string", f_string},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"unique", f_unique},
      {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

}  // namespace

bool has_filter(const std::string& name) { return filters().count(name) != 0; }

Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject, const CallArgs& args) {
  const auto it = filters().find(name);
  if (it == filters().end()) throw RuntimeError("No filter named '" + name + "'.");
  return it->second(interp, subject, args);
}

}  // namespace nanovllm::jinja
