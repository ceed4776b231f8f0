// Jinja parser: tokens in, syntax tree out, with jinja2's grammar and operator precedence
// (jinja2/parser.py is the reference: `-x|f` is f(-x), `a ~ b + c` is a ~ (b + c), `**` is
// left-associative). Tags it does not know are an Error with the line and column.
#pragma once

#include <string_view>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace nanovllm::jinja {

Body parse_template(std::string_view source, const LexerOptions& opts);

}  // namespace nanovllm::jinja
