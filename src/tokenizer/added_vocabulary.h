// Added tokens ("added_tokens" of tokenizer.json): matched in the text before pre-tokenization,
// leftmost-longest, as Hugging Face's AddedVocabulary does. Tokens with normalized = false are
// matched in the raw input; those with normalized = true in each normalized piece, against
// their own normalized form. single_word, lstrip and rstrip are applied per match.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/hash_tables.h"

namespace nanovllm {

class BpeModel;
class Normalizer;

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  bool operator==(const AddedToken&) const = default;
};

class AddedVocabulary {
 public:
  // Adds tokens as HF's add_tokens does when loading: a token keeps the id its content already
  // has (as an added token or in the model's vocabulary), otherwise it takes the next id after
  // the model's vocabulary. Empty contents are ignored. Ids written in the file are not used.
  void add_tokens(const std::vector<AddedToken>& tokens, const BpeModel& model, const Normalizer* normalizer);

  // A piece of text: either plain text (id < 0) or an added token's id.
  struct Segment {
    size_t start, end;
    int32_t id;
  };
  // Cuts `text` at the matches of the raw-text tokens (normalized_set = false) or of the
  // normalized tokens (true). Appends segments covering `text`; nothing for empty text.
  void split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const;

  const AddedToken* token(int32_t id) const;
  // The string decode uses for an added token (its normalized form when it has one).
  const std::string* decode_form(int32_t id) const;
  int32_t id_of(std::string_view content) const { return by_content_.find(content); }
  bool is_special_content(std::string_view content) const { return special_contents_.find(content) >= 0; }
  bool has_tokens(bool normalized_set) const { return !tries_[normalized_set].nodes.empty(); }
  int32_t max_id() const { return max_id_; }

 private:
  struct Trie {
    struct Node {
      int32_t id = -1;  // the token ending here, or -1
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    };
    std::vector<Node> nodes;                // nodes[0] is the root when non-empty
    std::array<int32_t, 256> root_child{};  // root's children by first byte, -1 for none
    void insert(std::string_view pattern, int32_t id);
    // The longest pattern starting at text[i]: its length, or 0.
    size_t longest_at(std::string_view text, size_t i, int32_t& id) const;
  };
  void rebuild_tries();

  std::unordered_map<int32_t, AddedToken> by_id_;
  std::unordered_map<int32_t, std::string> normalized_form_;
  StringIdMap by_content_;
  StringIdMap special_contents_;
  Trie tries_[2];  // [0]: raw-text tokens, [1]: normalized tokens
  int32_t max_id_ = -1;
};

}  // namespace nanovllm
