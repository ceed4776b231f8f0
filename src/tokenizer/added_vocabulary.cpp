#include "tokenizer/added_vocabulary.h"

#include <algorithm>
#include <map>

#include "tokenizer/bpe_model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

namespace {

// The first / last character of valid UTF-8 text.
char32_t first_char(std::string_view s) {
  size_t i = 0;
  return unicode::next_char(s, i);
}

char32_t last_char(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return unicode::next_char(s, i);
}

// Start of the run of whitespace that ends `s` (HF: the match of \s*$).
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    size_t j = i;
    if (!unicode::is_whitespace(unicode::next_char(s, j))) break;
    end = i;
  }
  return end;
}

// Length of the run of whitespace that starts `s` (HF: the match of ^\s*).
size_t leading_space_length(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!unicode::is_whitespace(unicode::next_char(s, j))) break;
    i = j;
  }
  return i;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t id) {
  if (nodes.empty()) {
    nodes.emplace_back();
    root_child.fill(-1);
  }
  int32_t node = 0;
  for (size_t k = 0; k < pattern.size(); ++k) {
    unsigned char b = static_cast<unsigned char>(pattern[k]);
    int32_t child = -1;
    if (node == 0) {
      child = root_child[b];
    } else {
      auto& ch = nodes[node].children;
      auto it = std::lower_bound(ch.begin(), ch.end(), std::pair<unsigned char, int32_t>{b, -1});
      if (it != ch.end() && it->first == b) child = it->second;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
      if (node == 0) {
        root_child[b] = child;
      } else {
        auto& ch = nodes[node].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::pair<unsigned char, int32_t>{b, -1}), {b, child});
      }
    }
    node = child;
  }
  nodes[node].id = id;
}

size_t AddedVocabulary::Trie::longest_at(std::string_view text, size_t i, int32_t& id) const {
  int32_t node = root_child[static_cast<unsigned char>(text[i])];
  size_t best = 0;
  for (size_t j = i + 1; node >= 0; ++j) {
    if (nodes[node].id >= 0) {
      best = j - i;
      id = nodes[node].id;
    }
    if (j >= text.size()) break;
    const auto& ch = nodes[node].children;
    unsigned char b = static_cast<unsigned char>(text[j]);
    auto it = std::lower_bound(ch.begin(), ch.end(), std::pair<unsigned char, int32_t>{b, -1});
    node = (it != ch.end() && it->first == b) ? it->second : -1;
  }
  return best;
}

void AddedVocabulary::add_tokens(const std::vector<AddedToken>& tokens, const BpeModel& model,
                                 const Normalizer* normalizer) {
  int32_t next_id = static_cast<int32_t>(model.vocab_size());
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    int32_t existing = by_content_.find(t.content);
    if (existing >= 0) {
      auto it = by_id_.find(existing);
      if (it != by_id_.end() && it->second == t) continue;
    }
    int32_t id = existing >= 0 ? existing : model.token_to_id(t.content);
    if (id < 0) id = next_id++;
    if (t.normalized && normalizer) {
      std::string form = t.content;
      normalizer->normalize(form);
      if (form != t.content) normalized_form_[id] = form;
    }
    by_content_.insert(t.content, id);
    if (t.special) special_contents_.insert(t.content, id);
    by_id_[id] = t;
    max_id_ = std::max(max_id_, id);
  }
  rebuild_tries();
}

void AddedVocabulary::rebuild_tries() {
  tries_[0] = Trie{};
  tries_[1] = Trie{};
  // Insert in id order so that the result does not depend on hash-map iteration order.
  std::map<int32_t, const AddedToken*> ordered;
  for (const auto& [id, t] : by_id_) ordered[id] = &t;
  for (const auto& [id, t] : ordered) {
    if (t->normalized) {
      auto f = normalized_form_.find(id);
      const std::string& pattern = f != normalized_form_.end() ? f->second : t->content;
      if (!pattern.empty()) tries_[1].insert(pattern, id);
    } else {
      tries_[0].insert(t->content, id);
    }
  }
}

const AddedToken* AddedVocabulary::token(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const std::string* AddedVocabulary::decode_form(int32_t id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  auto f = normalized_form_.find(id);
  return f != normalized_form_.end() ? &f->second : &it->second.content;
}

void AddedVocabulary::split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const {
  if (text.empty()) return;
  const Trie& trie = tries_[normalized_set];
  if (trie.nodes.empty()) {
    out.push_back({0, text.size(), -1});
    return;
  }
  size_t start_offset = 0;  // end of the last emitted match
  size_t i = 0;             // where the next search starts
  while (i < text.size()) {
    if (trie.root_child[static_cast<unsigned char>(text[i])] < 0) {
      ++i;
      continue;
    }
    int32_t id = -1;
    size_t len = trie.longest_at(text, i, id);
    if (len == 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + len;
    i = stop;  // non-overlapping, as the matcher's leftmost_find_iter
    const AddedToken& t = by_id_.at(id);
    if (t.single_word) {
      bool start_space = start == 0 || !unicode::is_word_char(last_char(text.substr(0, start)));
      bool stop_space = stop == text.size() || !unicode::is_word_char(first_char(text.substr(stop)));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, id});
    start_offset = stop;
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace nanovllm
