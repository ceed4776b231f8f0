#include "tokenizer/chat_template.h"

#include "runtime/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_parser.h"

namespace nanovllm {

using jinja::Body;
using jinja::Dict;
using jinja::Expr;
using jinja::ExprKind;
using jinja::Stmt;
using jinja::Value;

struct ChatTemplate::Impl {
  std::string source;
  Body body;
};

namespace {

// jinja2 rejects unknown filters and tests when it compiles a template, not when it runs it;
// so do we, so that a template we cannot render fails at load time with its location.
void check_names(const Expr* e) {
  if (!e) return;
  if (e->kind == ExprKind::Filter && !jinja::has_filter(e->name))
    throw Error("chat template syntax error at " + jinja::location(e->line, e->column) + ": No filter named '" +
                e->name + "'.");
  if (e->kind == ExprKind::Test && !jinja::has_test(e->name))
    throw Error("chat template syntax error at " + jinja::location(e->line, e->column) + ": No test named '" + e->name +
                "'.");
  for (const auto& c : e->children) check_names(c.get());
  for (const auto& [k, v] : e->kwargs) check_names(v.get());
}

void check_names(const Body& body) {
  for (const auto& s : body) {
    check_names(s->expr.get());
    check_names(s->condition.get());
    for (const auto& [name, def] : s->params) check_names(def.get());
    for (const auto& [cond, b] : s->branches) {
      check_names(cond.get());
      check_names(b);
    }
    check_names(s->body);
    check_names(s->else_body);
  }
}

const Dict& builtin_globals() {
  static const Dict globals = [] {
    Dict d;
    jinja::add_builtin_globals(d);
    return d;
  }();
  return globals;
}

template <class J>
std::string render_with(const Body& body, const J& messages, const ChatTemplateOptions& opts, const J& special_tokens,
                        const J& tools) {
  if (!messages.is_array()) throw Error("chat template: messages must be a JSON array");
  if (!special_tokens.is_null() && !special_tokens.is_object())
    throw Error("chat template: special tokens must be a JSON object");
  if (!opts.extra.is_null() && !opts.extra.is_object())
    throw Error("chat template: extra variables must be a JSON object");
  Dict globals = builtin_globals();
  // HF renders with messages, tools, documents, add_generation_prompt, the tokenizer's special
  // tokens (those that are set) and the caller's keyword arguments (enable_thinking, ...).
  if (special_tokens.is_object()) {
    for (auto it = special_tokens.begin(); it != special_tokens.end(); ++it) {
      const auto& v = it.value();
      if (v.is_null()) continue;
      // tokenizer_config.json may spell a token as an AddedToken object; HF passes its content.
      if (v.is_object() && v.contains("content") && v["content"].is_string())
        globals.set(Value::string(it.key()), Value::string(v["content"].template get<std::string>()));
      else
        globals.set(Value::string(it.key()), jinja::from_json(v));
    }
  }
  if (opts.extra.is_object()) {
    for (auto it = opts.extra.begin(); it != opts.extra.end(); ++it)
      globals.set(Value::string(it.key()), jinja::from_json(it.value()));
  }
  globals.set(Value::string("messages"), jinja::from_json(messages));
  globals.set(Value::string("tools"), jinja::from_json(tools));
  globals.set(Value::string("documents"), Value::none());
  globals.set(Value::string("add_generation_prompt"), Value::boolean(opts.add_generation_prompt));
  if (opts.enable_thinking) globals.set(Value::string("enable_thinking"), Value::boolean(*opts.enable_thinking));
  jinja::Interpreter interp(globals);
  return interp.render(body);
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source);
  jinja::LexerOptions lexing;
  lexing.trim_blocks = true;  // as HF's environment
  lexing.lstrip_blocks = true;
  impl->body = jinja::parse_template(impl->source, lexing);
  check_names(impl->body);
  impl_ = std::move(impl);
}

const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::render(const nlohmann::json& messages, const ChatTemplateOptions& opts,
                                 const nlohmann::json& special_tokens) const {
  return render_with(impl_->body, messages, opts, special_tokens, opts.tools);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& opts,
                                 const nlohmann::ordered_json& special_tokens,
                                 const nlohmann::ordered_json& tools) const {
  return render_with(impl_->body, messages, opts, special_tokens, tools);
}

}  // namespace nanovllm
