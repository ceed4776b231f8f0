// Chat templates: a model's Jinja `chat_template` (tokenizer_config.json), rendered with our own
// interpreter byte-for-byte as Hugging Face's apply_chat_template renders it. HF's environment
// is jinja2's ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
// loopcontrols extension ({% break %}, {% continue %}), its {% generation %} tag, tojson as
// json.dumps(ensure_ascii=False), and the globals raise_exception and strftime_now; that is the
// environment reproduced here (src/tokenizer/jinja_*: lexer, parser, interpreter, builtins).
//
// Verified byte-equal to transformers 5.17 / jinja2 3.1.6 on the templates and conversations
// of tests/fixtures/chat_templates (scripts/device/make-template-goldens.py makes them).
// Not supported, each an Error at construction with line and column: {% include/import/
// extends/block/call %}, recursive for loops, *args/**kwargs in calls, filters and tests
// jinja2 has but no chat template uses (groupby, truncate, wordwrap, urlencode, ...).
// Differences from Python that a template could observe: integers are 64-bit (overflow is an
// Error), case mapping (upper/lower/title) covers Latin, Greek, Cyrillic, Armenian and
// fullwidth letters only, and strings, lists, output and steps have size limits
// (jinja_builtins.h) where Python would run out of memory or time.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace nanovllm {

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;              // absent: the variable is undefined, as when HF is not passed it
  nlohmann::json tools = nullptr;                   // a list of JSON schemas, or null (the template sees None)
  nlohmann::json extra = nlohmann::json::object();  // more template variables (date_string, ...)
};

class ChatTemplate {
 public:
  // Parses once; Error with line and column for syntax it does not support (unknown tags,
  // filters or tests included).
  // Copies share the parsed template; render() may run on many threads at once.
  explicit ChatTemplate(std::string source);

  // messages: [{"role": "...", "content": "...", optional "tool_calls", "reasoning_content", ...}]
  // special: bos_token, eos_token, etc. (strings) from tokenizer_config.json; null entries are
  // left undefined, as HF leaves unset special tokens out of the variables, and AddedToken
  // objects ({"content": "<s>", ...}) stand for their content.
  // Throws Error: with the template's own message for raise_exception(), otherwise with the line
  // and column of the failing expression.
  std::string render(const nlohmann::json& messages, const ChatTemplateOptions& opts,
                     const nlohmann::json& special_tokens) const;
  // The same with key order kept. nlohmann::json sorts object keys, but tojson writes keys in
  // the order it is given and HF keeps the caller's order: a server should parse requests into
  // ordered_json and call this. `tools` (a list or null) replaces opts.tools here.
  std::string render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& opts,
                     const nlohmann::ordered_json& special_tokens, const nlohmann::ordered_json& tools) const;

  const std::string& source() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace nanovllm
