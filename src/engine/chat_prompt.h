// A model folder's chat template, ready to turn conversations into prompt text as Hugging Face's
// apply_chat_template does: the template of chat_template.jinja (newer transformers save it
// there) or else of tokenizer_config.json's "chat_template", rendered with the special tokens of
// tokenizer_config.json (bos_token, eos_token, ..., as HF passes its special_tokens_map).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace nanovllm {

class ModelChatTemplate {
 public:
  // Null when the folder has no chat template. Error for a template that does not parse or a
  // malformed tokenizer_config.json, naming the file.
  static std::unique_ptr<ModelChatTemplate> from_folder(const std::filesystem::path& dir);

  ModelChatTemplate(ChatTemplate tpl, nlohmann::ordered_json special_tokens);

  // messages: a list of {"role", "content", ...} objects (key order kept, as HF keeps it).
  // `tools` is a list of JSON schemas or null. Error naming the problem (or the template's own
  // raise_exception message).
  std::string render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& opts,
                     const nlohmann::ordered_json& tools = nullptr) const;

  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate template_;
  nlohmann::ordered_json special_tokens_;
};

}  // namespace nanovllm
