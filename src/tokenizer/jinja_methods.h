// The Python methods templates call on values: str (startswith, split, strip, format, ...),
// dict (get, items, keys, values) and list (index, count). Mutating methods exist, as in
// jinja2's immutable sandbox, only to fail when called.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tokenizer/jinja_value.h"

namespace nanovllm::jinja {

// obj.name as a callable bound to obj, or nullopt when obj's type has no such method.
std::optional<Value> bound_method(const Value& obj, const std::string& name);

// Python's str.replace (an empty `old` inserts `repl` around every code point) and
// str.splitlines (every line boundary Python knows, \r\n as one).
std::string python_replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count);
List python_splitlines(const std::string& s, bool keepends);

// Python's format(value, spec) for the specs templates use: fill, align, sign, width,
// grouping, precision and the s/d/f/e/g/%/x types.
std::string format_spec(const Value& v, const std::string& spec);

}  // namespace nanovllm::jinja
