// UTF-8 helpers for the Jinja interpreter. Python strings are sequences of code points, so
// len(), indexing, slicing and strip() count code points, not bytes; these helpers give the
// interpreter those semantics over the UTF-8 std::string it stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nanovllm::jinja {

// Byte offset of every code point start, plus s.size() at the end (so code point i spans
// [offsets[i], offsets[i+1])). Invalid bytes count as one code point each.
std::vector<size_t> code_point_offsets(std::string_view s);

size_t code_point_count(std::string_view s);

// Decodes the code point at s[pos] and advances pos; invalid bytes decode to themselves.
uint32_t next_code_point(std::string_view s, size_t& pos);

void append_utf8(std::string& out, uint32_t cp);

// Python's str.isspace() for one code point: what str.strip() and split() remove, and what
// the lexer's \s matches.
bool is_python_space(uint32_t cp);

// Python's str.strip/lstrip/rstrip: with chars == nullptr strip whitespace, else strip any
// code point that occurs in *chars.
std::string python_strip(std::string_view s, const std::string* chars, bool left, bool right);

// Python's str.split(): with sep == nullptr split on whitespace runs and drop empty parts.
std::vector<std::string> python_split(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> python_rsplit(std::string_view s, const std::string* sep, long maxsplit);

// Python's str.upper/lower/title/capitalize/islower/isupper over the one-to-one case pairs of
// Latin (with its extensions), Greek, Cyrillic, Armenian and fullwidth Latin, plus ß -> SS and
// the final sigma. Other scripts (Georgian, Cherokee, ...) are left as they are: Python's full
// tables are large, and templates case-map role names and keywords.
std::string unicode_upper(std::string_view s);
std::string unicode_lower(std::string_view s);
std::string python_title(std::string_view s);
std::string python_capitalize(std::string_view s);
bool python_islower(std::string_view s);
bool python_isupper(std::string_view s);

// Python's \w (what the wordcount filter counts), approximately above ASCII.
bool is_word_char(uint32_t cp);

}  // namespace nanovllm::jinja
