// Pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace and Sequence. Each cuts a piece
// of normalized text into smaller pieces (and may rewrite them); the model then tokenizes each
// piece on its own. Anything else is refused with an Error naming its type.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nanovllm {

// A piece of text between pipeline stages. `text` points into the caller's string or into a
// TextArena. `at_origin`: the piece starts at byte 0 of the encoded input (Metaspace's
// prepend_scheme "first" prepends only there, as HF's offsets_original().0 == 0 does).
struct TextPiece {
  std::string_view text;
  bool at_origin;
};

// Owns the strings that rewriting stages create, for the duration of one encode.
class TextArena {
 public:
  std::string_view keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back();
  }
  void clear() { strings_.clear(); }

 private:
  std::deque<std::string> strings_;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Appends the pieces of `in` to `out`; empty pieces are dropped, as HF drops them.
  virtual void split(const TextPiece& in, std::vector<TextPiece>& out, TextArena& arena) const = 0;
};

class PreTokenizerPipeline {
 public:
  // From the "pre_tokenizer" field (null: every piece goes to the model whole).
  explicit PreTokenizerPipeline(const nlohmann::json& j);
  ~PreTokenizerPipeline();

  // Replaces `pieces` with their pre-tokens.
  void run(std::vector<TextPiece>& pieces, TextArena& arena) const;
  // True when the last stage is a ByteLevel whose byte -> character mapping was left to the
  // model (BpeModel::tokenize_byte_level): the pieces are then raw bytes.
  bool byte_level_output() const { return byte_level_output_; }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
  bool byte_level_output_ = false;
};

}  // namespace nanovllm
