#include "tokenizer/jinja_parser.h"

#include <initializer_list>
#include <string>

#include "runtime/error.h"
#include "tokenizer/jinja_expression_parser.h"
#include "tokenizer/jinja_token_stream.h"

namespace nanovllm::jinja {
namespace {

// The statement half of the parser: text, {{ }} and the {% %} tags, mirroring jinja2's
// subparse/parse_statements: a tag's body runs up to one of its end tags, which the caller
// consumes, and the block end after a statement is consumed by the body that contains it.
class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : ts_(std::move(tokens)), expr_(ts_) {}

  Body parse() { return subparse({}); }

 private:
  Body subparse(std::initializer_list<std::string_view> end_tags) {
    Body body;
    while (ts_.current().type != TokenType::End) {
      const Token& t = ts_.current();
      if (t.type == TokenType::Data) {
        auto s = stmt(StmtKind::Text, t);
        s->text = t.text;
        body.push_back(std::move(s));
        ts_.next();
      } else if (t.type == TokenType::VariableBegin) {
        ts_.next();
        auto s = stmt(StmtKind::Output, ts_.current());
        s->expr = expr_.parse_tuple(false, true, {}, false);
        if (ts_.current().type != TokenType::VariableEnd)
          ts_.fail_at(ts_.current(),
                      "expected token 'end of print statement', got '" + ts_.describe(ts_.current()) + "'");
        ts_.next();
        body.push_back(std::move(s));
      } else if (t.type == TokenType::BlockBegin) {
        ts_.next();
        if (end_tags.size() && ts_.is_name_in(ts_.current(), end_tags)) return body;
        body.push_back(parse_statement());
        ts_.expect_block_end();
      } else {
        ts_.fail_at(t, "unexpected '" + ts_.describe(t) + "'");
      }
    }
    if (end_tags.size()) {
      std::string names;
      for (auto n : end_tags) {
        names += names.empty() ? "'" : " or '";
        names.append(n);
        names += '\'';
      }
      ts_.fail_at(ts_.current(),
                  "Unexpected end of template. Jinja was looking for the following tags: " + names + ".");
    }
    return body;
  }

  // jinja2's parse_statements: the tag's own block end, then the body up to an end tag,
  // which is left as the current token (or consumed, with drop_needle).
  Body parse_statements(std::initializer_list<std::string_view> end_tags, bool drop_needle) {
    ts_.expect_block_end();
    Body body = subparse(end_tags);
    if (drop_needle) ts_.next();
    return body;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const TokenStream::Nesting guard(ts_);
    const Token& t = ts_.current();
    if (t.type != TokenType::Name) ts_.fail_at(t, "tag name expected");
    const std::string& tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "with") return parse_with();
    if (tag == "filter") return parse_filter_block();
    if (tag == "print") {
      auto s = stmt(StmtKind::Output, ts_.next());
      s->expr = expr_.parse_tuple(false, true, {}, false);
      return s;
    }
    if (tag == "generation") {  // Hugging Face's AssistantTracker extension
      auto s = stmt(StmtKind::Scope, ts_.next());
      s->body = parse_statements({"endgeneration"}, true);
      return s;
    }
    if (tag == "break" || tag == "continue") {  // jinja2.ext.loopcontrols, which HF enables
      if (loop_depth_ == 0) ts_.fail_at(t, "'" + tag + "' outside of a for loop");
      return stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, ts_.next());
    }
    ts_.fail_at(t, "Encountered unknown tag '" + tag + "'.");
  }

  std::unique_ptr<Stmt> parse_if() {
    auto s = stmt(StmtKind::If, ts_.next());
    ExprPtr cond = expr_.parse_tuple(false, false, {}, false);
    Body body = parse_statements({"elif", "else", "endif"}, false);
    s->branches.emplace_back(std::move(cond), std::move(body));
    while (true) {
      const std::string tag = ts_.next().text;
      if (tag == "elif") {
        ExprPtr c = expr_.parse_tuple(false, false, {}, false);
        Body b = parse_statements({"elif", "else", "endif"}, false);
        s->branches.emplace_back(std::move(c), std::move(b));
        continue;
      }
      if (tag == "else") s->else_body = parse_statements({"endif"}, true);
      break;
    }
    return s;
  }

  // A for/set target: a name, or names separated by commas (optionally parenthesized).
  void parse_targets(Stmt& s, std::initializer_list<std::string_view> end_names) {
    const bool paren = ts_.is_op(ts_.current(), "(");
    if (paren) ts_.next();
    while (true) {
      s.targets.push_back(ts_.expect_name().text);
      if (!ts_.is_op(ts_.current(), ",")) break;
      s.unpack = true;
      ts_.next();
      if ((paren && ts_.is_op(ts_.current(), ")")) || ts_.is_name_in(ts_.current(), end_names) ||
          ts_.is_op(ts_.current(), "="))
        break;
    }
    if (paren) {
      s.unpack = true;
      ts_.expect_op(")");
    }
  }

  std::unique_ptr<Stmt> parse_for() {
    auto s = stmt(StmtKind::For, ts_.next());
    parse_targets(*s, {"in"});
    ts_.expect_name("in");
    s->expr = expr_.parse_tuple(false, false, {"recursive"}, false);
    if (ts_.is_name(ts_.current(), "if")) {
      ts_.next();
      s->condition = expr_.parse_expression(true);
    }
    if (ts_.is_name(ts_.current(), "recursive")) ts_.fail_at(ts_.current(), "recursive for loops are not supported");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (ts_.next().text == "else") s->else_body = parse_statements({"endfor"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    const Token& at = ts_.next();
    auto s = stmt(StmtKind::Set, at);
    if (ts_.current().type == TokenType::Name && ts_.is_op(ts_.look(), ".")) {
      s->targets.push_back(ts_.next().text);
      ts_.next();
      s->attr = ts_.expect_name().text;
    } else {
      parse_targets(*s, {});
    }
    if (ts_.is_op(ts_.current(), "=")) {
      ts_.next();
      s->expr = expr_.parse_tuple(false, true, {}, false);
      return s;
    }
    if (!s->attr.empty() || s->unpack) ts_.fail_at(at, "a block set takes a single name");
    s->kind = StmtKind::SetBlock;
    if (ts_.is_op(ts_.current(), "|")) s->expr = expr_.parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto s = stmt(StmtKind::Macro, ts_.next());
    s->name = ts_.expect_name().text;
    ts_.expect_op("(");
    while (!ts_.is_op(ts_.current(), ")")) {
      if (!s->params.empty()) ts_.expect_op(",");
      std::string param = ts_.expect_name().text;
      ExprPtr def;
      if (ts_.is_op(ts_.current(), "=")) {
        ts_.next();
        def = expr_.parse_expression(true);
      }
      s->params.emplace_back(std::move(param), std::move(def));
    }
    ts_.next();
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved;
    return s;
  }

  std::unique_ptr<Stmt> parse_with() {
    auto s = stmt(StmtKind::With, ts_.next());
    while (ts_.current().type != TokenType::BlockEnd) {
      if (!s->params.empty()) ts_.expect_op(",");
      std::string target = ts_.expect_name().text;
      ts_.expect_op("=");
      s->params.emplace_back(std::move(target), expr_.parse_expression(true));
    }
    s->body = parse_statements({"endwith"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_filter_block() {
    auto s = stmt(StmtKind::FilterBlock, ts_.next());
    s->expr = expr_.parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    return s;
  }
  static std::unique_ptr<Stmt> stmt(StmtKind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->column = at.column;
    return s;
  }

  TokenStream ts_;
  ExpressionParser expr_;
  int loop_depth_ = 0;
};

}  // namespace

Body parse_template(std::string_view source, const LexerOptions& opts) {
  return Parser(tokenize(source, opts)).parse();
}

}  // namespace nanovllm::jinja
