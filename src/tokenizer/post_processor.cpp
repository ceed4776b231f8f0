#include "tokenizer/post_processor.h"

#include <nlohmann/json.hpp>

#include <climits>

#include "runtime/error.h"

namespace nanovllm {

using nlohmann::json;

PostProcessor::PostProcessor(const json& j) {
  if (!j.is_null()) add(j);
}

void PostProcessor::add(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error("tokenizer.json: a post_processor must be an object with a \"type\"");
  const std::string& type = j["type"].get_ref<const std::string&>();
  if (type == "ByteLevel") return;  // it trims offsets; ids are left as they are
  if (type == "Sequence") {
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) throw Error("tokenizer.json: Sequence post_processor has no \"processors\" array");
    for (const json& p : *it) add(p);
    return;
  }
  if (type != "TemplateProcessing")
    throw Error("tokenizer.json: unsupported post_processor type '" + type +
                "' (supported: TemplateProcessing, ByteLevel, Sequence)");
  // Two templates in a Sequence apply one after the other; a second would wrap the first's
  // output, which no published tokenizer does.
  if (has_template_) throw Error("tokenizer.json: more than one TemplateProcessing post_processor");
  has_template_ = true;
  auto single = j.find("single");
  auto specials = j.find("special_tokens");
  if (single == j.end() || !single->is_array()) throw Error("tokenizer.json: TemplateProcessing has no \"single\" template");
  bool seen_sequence = false;
  for (const json& piece : *single) {
    std::string special;
    if (piece.is_object() && piece.contains("Sequence")) {
      const json& s = piece["Sequence"];
      if (!s.is_object() || s.value("id", "") != "A")
        throw Error("tokenizer.json: TemplateProcessing's single template may only hold sequence A");
      if (seen_sequence) throw Error("tokenizer.json: TemplateProcessing's single template holds sequence A twice");
      seen_sequence = true;
      continue;
    }
    if (piece.is_object() && piece.contains("SpecialToken") && piece["SpecialToken"].is_object() &&
        piece["SpecialToken"].contains("id") && piece["SpecialToken"]["id"].is_string()) {
      special = piece["SpecialToken"]["id"].get<std::string>();
    } else if (piece.is_string()) {
      // The string form of a piece: "$A" / "$" / "$A:0" is the sequence, anything else a token.
      std::string s = piece.get<std::string>();
      std::string id = s.substr(0, s.find(':'));
      if (id == "$" || id == "$A" || id == "$a" || (id.size() > 1 && id[0] == '$' && id.find_first_not_of("0123456789", 1) == std::string::npos)) {
        if (seen_sequence) throw Error("tokenizer.json: TemplateProcessing's single template holds sequence A twice");
        seen_sequence = true;
        continue;
      }
      if (id[0] == '$') throw Error("tokenizer.json: TemplateProcessing's single template may only hold sequence A");
      special = id;
    } else {
      throw Error("tokenizer.json: TemplateProcessing piece is neither a Sequence nor a SpecialToken");
    }
    if (specials == j.end() || !specials->is_object() || !specials->contains(special))
      throw Error("tokenizer.json: TemplateProcessing uses special token '" + special + "' missing from \"special_tokens\"");
    const json& tok = (*specials)[special];
    if (!tok.contains("ids") || !tok["ids"].is_array())
      throw Error("tokenizer.json: TemplateProcessing special token '" + special + "' has no \"ids\"");
    for (const json& id : tok["ids"]) {
      if (!id.is_number_unsigned() || id.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX))
        throw Error("tokenizer.json: TemplateProcessing special token '" + special + "' has a bad id");
      (seen_sequence ? suffix_ : prefix_).push_back(id.get<int32_t>());
    }
  }
  if (!seen_sequence) throw Error("tokenizer.json: TemplateProcessing's single template has no sequence $A");
}

void PostProcessor::apply(std::vector<int32_t>& ids, bool add_special_tokens) const {
  if (!add_special_tokens || (prefix_.empty() && suffix_.empty())) return;
  ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
}

}  // namespace nanovllm
