// StreamingDetokenizer (declared in tokenizer.h).
//
// The window ids_ holds the ids since the last safe restart point; ids_[0, prefix_end_) are
// already emitted and decode (as a window of their own) to prefix_text_. A push decodes the
// window and emits what lies past prefix_text_, unless the bytes end inside a character that
// later tokens may complete (ByteLevel) or a ByteFallback byte run is still open: then the
// U+FFFD that decode shows for now could still change. Text that ends in U+FFFD for good
// (invalid bytes) is emitted at once, so a model that emits garbage does not grow the window.
// After emitting, the window restarts at the old read point if the text there is non-empty:
// that keeps each decoder's start-of-text rule (Strip's leading space, Metaspace's first token)
// inside the already-emitted prefix, so the new text is what decode(all ids) has for those
// tokens.
#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace nanovllm {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamingDetokenizer::push(int32_t id) {
  // Ids that decode drops (skipped specials, unknown ids) never enter the window.
  std::vector<std::string> probe;
  tokenizer_.append_tokens(std::span<const int32_t>(&id, 1), skip_special_tokens_, probe);
  if (probe.empty()) return "";
  ids_.push_back(id);
  if (tokenizer_.continues_byte_run(id) || tokenizer_.ends_inside_character(ids_)) return "";
  std::string text = tokenizer_.decode(ids_, false);
  if (text.size() <= prefix_text_.size() || text.compare(0, prefix_text_.size(), prefix_text_) != 0) return "";
  std::string fresh = text.substr(prefix_text_.size());
  // Restart the window at the old read point when the ids after it have text of their own.
  std::span<const int32_t> tail(ids_.data() + prefix_end_, ids_.size() - prefix_end_);
  std::string tail_text = prefix_end_ > 0 ? tokenizer_.decode(tail, false) : std::string();
  if (prefix_end_ > 0 && !tail_text.empty()) {
    ids_.erase(ids_.begin(), ids_.begin() + prefix_end_);
    prefix_text_ = std::move(tail_text);
  } else {
    prefix_text_ = std::move(text);
  }
  prefix_end_ = ids_.size();
  return fresh;
}

std::string StreamingDetokenizer::flush() {
  std::string text = tokenizer_.decode(ids_, false);
  std::string rest = text.compare(0, prefix_text_.size(), prefix_text_) == 0 ? text.substr(prefix_text_.size()) : std::string();
  ids_.clear();
  prefix_end_ = 0;
  prefix_text_.clear();
  return rest;
}

}  // namespace nanovllm
