// What the interpreter knows beyond the grammar: Python's operators, the str/dict/list methods
// templates call, jinja2's filters and tests (with HF's tojson), and the global functions of
// HF's environment. Every failure is a RuntimeError, which the interpreter turns into an Error
// that names the line and column of the expression.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace nanovllm::jinja {

// Limits Python does not have. A chat template renders a prompt: nothing it builds needs to be
// larger than this, and a template that tries ("x" * 10**12) fails instead of exhausting memory.
constexpr size_t kMaxTextBytes = size_t{64} << 20;  // any string, the output included
constexpr size_t kMaxListItems = size_t{1} << 22;
void check_text_size(size_t bytes);  // throws RuntimeError past kMaxTextBytes
void check_list_size(size_t items);  // throws RuntimeError past kMaxListItems

// A decimal field width, precision or index from a format string; at most 9 digits.
int64_t parse_small_int(const std::string& digits, const char* what);

// Binds Python-style call arguments to the parameter names of `function`; absent ones are
// nullptr. Throws for surplus positional arguments and unknown keywords.
std::vector<const Value*> bind_args(const CallArgs& args, std::initializer_list<const char*> names,
                                    const char* function);

// Throws the UndefinedError jinja2 raises when an Undefined is used where a value is needed.
[[noreturn]] void fail_undefined(const Value& v);

// Operators.
Value binary_op(BinaryOp op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);                  // `item in container`
std::string percent_format(const std::string& format, const Value& args);  // str % args

// Attribute and item access with jinja2's sandboxed getattr/getitem fallbacks.
Value get_attribute(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Filters and tests by name; has_* let the parser's caller reject unknown names up front.
bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject, const CallArgs& args);
bool apply_test(Interpreter& interp, const std::string& name, const Value& subject, const CallArgs& args);

// The globals of HF's environment: range, namespace, dict, raise_exception, strftime_now.
void add_builtin_globals(Dict& globals);

}  // namespace nanovllm::jinja
