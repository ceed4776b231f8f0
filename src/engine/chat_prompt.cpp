#include "engine/chat_prompt.h"

#include <fstream>
#include <sstream>

#include "runtime/error.h"
#include "tokenizer/tokenizer.h"

namespace nanovllm {
namespace {

using nlohmann::ordered_json;

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(p.string() + ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// What HF puts in a template's variables from tokenizer_config.json: every "..._token" that is a
// token (a string, an AddedToken object, or null for unset), additional_special_tokens, and the
// entries of extra_special_tokens (Gemma 3's boi_token, ...). Flags such as add_bos_token are
// not tokens and stay out.
ordered_json special_tokens_of(const std::string& config_text) {
  ordered_json special = ordered_json::object();
  if (config_text.empty()) return special;
  const ordered_json cfg = ordered_json::parse(config_text, nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) return special;  // parse_tokenizer_config has already reported it
  auto is_token = [](const ordered_json& v) {
    return v.is_string() || v.is_null() || (v.is_object() && v.contains("content") && v["content"].is_string());
  };
  for (const auto& [key, value] : cfg.items()) {
    const bool named_token = key.size() > 6 && key.compare(key.size() - 6, 6, "_token") == 0;
    if (named_token && is_token(value)) special[key] = value;
  }
  if (auto it = cfg.find("additional_special_tokens"); it != cfg.end() && it->is_array())
    special["additional_special_tokens"] = *it;
  if (auto it = cfg.find("extra_special_tokens"); it != cfg.end() && it->is_object())
    for (const auto& [key, value] : it->items())
      if (is_token(value) && !special.contains(key)) special[key] = value;
  return special;
}

}  // namespace

ModelChatTemplate::ModelChatTemplate(ChatTemplate tpl, ordered_json special_tokens)
    : template_(std::move(tpl)), special_tokens_(std::move(special_tokens)) {}

std::unique_ptr<ModelChatTemplate> ModelChatTemplate::from_folder(const std::filesystem::path& dir) {
  const auto cfg_path = dir / "tokenizer_config.json";
  const std::string cfg_text = std::filesystem::exists(cfg_path) ? read_text(cfg_path) : std::string();
  const TokenizerConfig cfg = parse_tokenizer_config(cfg_text);
  std::string source = cfg.chat_template;
  std::filesystem::path where = cfg_path;
  if (const auto jinja = dir / "chat_template.jinja"; std::filesystem::exists(jinja)) {
    source = read_text(jinja);  // transformers reads it in preference to tokenizer_config.json's
    where = jinja;
  }
  if (source.empty()) return nullptr;
  try {
    return std::make_unique<ModelChatTemplate>(ChatTemplate(std::move(source)), special_tokens_of(cfg_text));
  } catch (const Error& e) {
    throw Error(where.string() + ": " + e.what());
  }
}

std::string ModelChatTemplate::render(const ordered_json& messages, const ChatTemplateOptions& opts,
                                      const ordered_json& tools) const {
  if (!messages.is_array())
    throw Error("chat: messages must be a list of {\"role\": ..., \"content\": ...} objects");
  for (size_t i = 0; i < messages.size(); ++i)
    if (!messages[i].is_object() || !messages[i].contains("role") || !messages[i]["role"].is_string())
      throw Error("chat: message " + std::to_string(i) + " is not an object with a \"role\" string");
  return template_.render(messages, opts, special_tokens_, tools);
}

}  // namespace nanovllm
