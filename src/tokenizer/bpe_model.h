// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): vocabulary, ranked merges,
// unk / byte fallback, continuing_subword_prefix / end_of_word_suffix, ignore_merges, and a
// per-thread cache of word -> ids.
//
// Merging follows Hugging Face's Word::merge_all exactly: a min-heap of (rank, position) over
// adjacent pairs; a popped entry is stale when its left symbol is gone, has no right neighbour,
// or the pair there now merges into a different token.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/hash_tables.h"

namespace nanovllm {

class BpeModel {
 public:
  explicit BpeModel(const nlohmann::json& model);  // throws Error on a malformed model

  // Appends the ids of one pre-token, given in the vocabulary's character form.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;
  // Same, for a pre-token given as raw bytes that the ByteLevel pre-tokenizer would map to
  // characters first: the cache is keyed by the raw bytes and the mapping is skipped when the
  // vocabulary holds every byte character.
  void tokenize_byte_level(std::string_view raw, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const { return vocab_.find(token); }
  // Nullptr for an id with no token.
  const std::string* id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
    return &id_to_token_[id];
  }
  size_t vocab_size() const { return vocab_.size(); }  // HF's BPE::get_vocab_size: entries
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  // Initial symbols of a word (merge_word's first half), then the merge loop.
  void word_ids(std::string_view word, std::vector<int32_t>& out) const;
  // Merges each "▁word" of a SentencePiece-style piece on its own (see split_points_ok_).
  void merge_by_metaspace_words(std::string_view word, std::vector<int32_t>& out) const;
  void merge(std::vector<int32_t>& symbols, std::vector<int32_t>& out) const;
  bool cache_lookup(std::string_view key, std::vector<int32_t>& out) const;
  void cache_insert(std::string_view key, const int32_t* ids, size_t n) const;

  StringIdMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  MergeMap merges_;
  std::optional<std::string> unk_token_;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_fallback_ids_{};  // id of "<0xXX>", or -1
  std::array<int32_t, 256> byte_level_ids_{};     // id of the byte-level character of each byte
  bool byte_level_direct_ = false;                // every byte character is in the vocabulary
  std::vector<int32_t> bmp_char_ids_;             // single-character tokens below U+10000
  // SentencePiece-style words ("▁The▁cat▁sat") can be cut before a "▁" that follows a
  // character c when no merge can ever join across that point: no token has the last character
  // of c's symbol right before "▁", so no merged token could contain the cut. c's symbol ends in
  // c when c is a token; else it is a byte token "<0xXX>" or the unk token. The pieces then
  // merge exactly as the whole would, and each is cached. On when the vocabulary has "▁" and
  // merges are not ignored.
  bool can_cut_after(char32_t c) const;
  bool metaspace_cuts_ = false;
  std::vector<char32_t> before_metaspace_;  // characters some token has right before "▁", sorted
  bool cut_after_unknown_ok_ = false;       // the symbol of an unknown character allows a cut
  uint64_t cache_owner_;                          // identifies this model in the thread caches
};

}  // namespace nanovllm
