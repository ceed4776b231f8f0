#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "runtime/error.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

using nlohmann::json;

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("tokenizer: cannot open " + path.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string("tokenizer: ") + what + " is not valid JSON: " + e.what());
  }
}

// A special-token field of tokenizer_config.json: "<s>", {"content": "<s>", ...}, or null.
std::string token_string(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw Error(std::string("tokenizer_config.json: \"") + key + "\" must be a string, an object with \"content\", or null");
}

bool flag(const json& t, const char* key, bool fallback) {
  auto it = t.find(key);
  if (it == t.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(std::string("tokenizer.json: added token field \"") + key + "\" must be a boolean");
  return it->get<bool>();
}

// Whether a component tree (a decoder and its Sequence children) holds a component of `type`.
bool mentions_type(const json& j, const char* type) {
  if (j.is_object()) {
    if (auto t = j.find("type"); t != j.end() && t->is_string() && t->get<std::string>() == type) return true;
    for (const auto& [k, v] : j.items())
      if (mentions_type(v, type)) return true;
  } else if (j.is_array()) {
    for (const json& v : j)
      if (mentions_type(v, type)) return true;
  }
  return false;
}

}  // namespace

TokenizerConfig parse_tokenizer_config(const std::string& text) {
  TokenizerConfig c;
  if (text.empty()) return c;
  json cfg = parse_json(text, "tokenizer_config.json");
  if (!cfg.is_object()) throw Error("tokenizer_config.json: not a JSON object");
  c.raw_json = text;
  c.bos_token = token_string(cfg, "bos_token");
  c.eos_token = token_string(cfg, "eos_token");
  c.pad_token = token_string(cfg, "pad_token");
  c.unk_token = token_string(cfg, "unk_token");
  if (auto t = cfg.find("chat_template"); t != cfg.end() && !t->is_null()) {
    if (t->is_string()) {
      c.chat_template = t->get<std::string>();
    } else if (t->is_array()) {
      // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]: the default one.
      for (const json& named : *t)
        if (named.is_object() && named.value("name", "") == "default" && named.contains("template") && named["template"].is_string())
          c.chat_template = named["template"].get<std::string>();
    } else {
      throw Error("tokenizer_config.json: \"chat_template\" must be a string or a list of named templates");
    }
  }
  return c;
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_folder(const std::filesystem::path& dir) {
  const auto tok_path = dir / "tokenizer.json";
  if (!std::filesystem::exists(tok_path))
    throw Error("tokenizer: " + tok_path.string() + " not found (only tokenizer.json tokenizers are supported)");
  const auto cfg_path = dir / "tokenizer_config.json";
  std::string cfg = std::filesystem::exists(cfg_path) ? read_file(cfg_path) : std::string();
  try {
    return from_json(read_file(tok_path), cfg);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (in " + dir.string() + ")");
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json) {
  json j = parse_json(tokenizer_json, "tokenizer.json");
  if (!j.is_object()) throw Error("tokenizer.json: not a JSON object");
  if (auto v = j.find("version"); v != j.end() && !(v->is_string() && v->get<std::string>() == "1.0"))
    throw Error("tokenizer.json: unknown tokenizer version " + v->dump());
  auto m = j.find("model");
  if (m == j.end() || !m->is_object()) throw Error("tokenizer.json: no \"model\" object");
  std::string type = "BPE";  // old files name no type; only BPE has merges
  if (auto t = m->find("type"); t != m->end()) {
    if (!t->is_string()) throw Error("tokenizer.json: model.type must be a string");
    type = t->get<std::string>();
  } else if (!m->contains("merges")) {
    throw Error("tokenizer.json: the model has no \"type\"");
  }
  if (type != "BPE")
    throw Error("tokenizer.json: unsupported model type '" + type + "' (only BPE is supported)");

  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  auto field = [&](const char* key) -> const json& {
    static const json null_json;
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  tok->model_ = std::make_unique<BpeModel>(*m);
  tok->normalizer_ = make_normalizer(field("normalizer"));
  tok->pre_tokenizer_ = std::make_unique<PreTokenizerPipeline>(field("pre_tokenizer"));
  tok->post_processor_ = std::make_unique<PostProcessor>(field("post_processor"));
  tok->decoder_ = make_decoder(field("decoder"));
  tok->byte_fallback_decoder_ = mentions_type(field("decoder"), "ByteFallback");
  tok->byte_level_decoder_ = mentions_type(field("decoder"), "ByteLevel");
  tok->added_ = std::make_unique<AddedVocabulary>();
  const json& added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) throw Error("tokenizer.json: \"added_tokens\" must be an array");
  std::vector<AddedToken> tokens;
  for (const json& t : added.is_array() ? added : json::array()) {
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
      throw Error("tokenizer.json: an added token has no string \"content\"");
    AddedToken a;
    a.content = t["content"].get<std::string>();
    a.special = flag(t, "special", false);
    a.single_word = flag(t, "single_word", false);
    a.lstrip = flag(t, "lstrip", false);
    a.rstrip = flag(t, "rstrip", false);
    a.normalized = flag(t, "normalized", !a.special);
    tokens.push_back(std::move(a));
  }
  tok->added_->add_tokens(tokens, *tok->model_, tok->normalizer_.get());
  tok->config_ = parse_tokenizer_config(config_json);
  return tok;
}

void Tokenizer::encode_piece(std::string_view text, bool at_origin, std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  thread_local std::vector<TextPiece> pieces;
  thread_local TextArena arena;
  pieces.assign(1, TextPiece{text, at_origin});
  pre_tokenizer_->run(pieces, arena);
  if (pre_tokenizer_->byte_level_output()) {
    for (const TextPiece& p : pieces) model_->tokenize_byte_level(p.text, ids);
  } else {
    for (const TextPiece& p : pieces) model_->tokenize(p.text, ids);
  }
  arena.clear();
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (size_t bad = unicode::find_invalid_utf8(text); bad != std::string_view::npos)
    throw Error("tokenizer: encode input is not valid UTF-8 (at byte " + std::to_string(bad) + " of " +
                std::to_string(text.size()) + ")");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<AddedVocabulary::Segment> raw, normalized;
  added_->split(text, /*normalized_set=*/false, raw);
  std::string norm;
  for (const auto& seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string_view piece = text.substr(seg.start, seg.end - seg.start);
    if (normalizer_) {
      norm.assign(piece);
      normalizer_->normalize(norm);
      piece = norm;
    }
    const bool at_origin = seg.start == 0;
    if (!added_->has_tokens(/*normalized_set=*/true)) {
      encode_piece(piece, at_origin, ids);
      continue;
    }
    normalized.clear();
    added_->split(piece, /*normalized_set=*/true, normalized);
    for (const auto& sub : normalized) {
      if (sub.id >= 0) ids.push_back(sub.id);
      else encode_piece(piece.substr(sub.start, sub.end - sub.start), at_origin && sub.start == 0, ids);
    }
  }
  post_processor_->apply(ids, add_special_tokens);
  return ids;
}

void Tokenizer::append_tokens(std::span<const int32_t> ids, bool skip_special_tokens, std::vector<std::string>& out) const {
  for (int32_t id : ids) {
    const std::string* s = added_->decode_form(id);
    if (!s) s = model_->id_to_token(id);
    if (!s) continue;  // no such id: skipped, as HF does
    if (skip_special_tokens && added_->is_special_content(*s)) continue;
    out.push_back(*s);
  }
}

std::string Tokenizer::decode_tokens(std::vector<std::string> tokens) const {
  std::string out;
  if (decoder_) {
    decoder_->decode_chain(tokens);
    for (const std::string& t : tokens) out += t;
    return out;
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) out += ' ';
    out += tokens[i];
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  append_tokens(ids, skip_special_tokens, tokens);
  return decode_tokens(std::move(tokens));
}

bool Tokenizer::continues_byte_run(int32_t id) const {
  if (!byte_fallback_decoder_) return false;
  const std::string* s = added_->decode_form(id);
  if (!s) s = model_->id_to_token(id);
  return s && s->size() == 6 && s->compare(0, 3, "<0x") == 0 && (*s)[5] == '>';
}

bool Tokenizer::ends_inside_character(std::span<const int32_t> ids) const {
  if (!byte_level_decoder_) return false;
  // A character is at most 4 bytes: the bytes of the last few tokens decide.
  const auto& t = byte_level::tables();
  std::string tail;
  for (size_t k = ids.size(); k > 0 && tail.size() < 4 && ids.size() - k < 8; --k) {
    std::vector<std::string> one;
    append_tokens(ids.subspan(k - 1, 1), false, one);
    if (one.empty()) continue;
    std::string bytes;
    for (size_t i = 0; i < one[0].size();) {
      char32_t c = unicode::next_char(one[0], i);
      if (c >= 512 || t.char_to_byte[c] < 0) {  // not byte-level: the decoder keeps its UTF-8
        bytes = one[0];
        break;
      }
      bytes.push_back(static_cast<char>(t.char_to_byte[c]));
    }
    tail.insert(0, bytes);
  }
  return unicode::ends_with_incomplete_utf8(tail);
}

int32_t Tokenizer::vocab_size() const { return std::max(model_->max_id(), added_->max_id()) + 1; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  int32_t id = added_->id_of(token);
  if (id < 0) id = model_->token_to_id(token);
  if (id < 0) return std::nullopt;
  return id;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const std::string* s = added_->decode_form(id);
  if (!s) s = model_->id_to_token(id);
  if (!s) return std::nullopt;
  return *s;
}

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* t = added_->token(id);
  return t && t->special;
}

}  // namespace nanovllm
