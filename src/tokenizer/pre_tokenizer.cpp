#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "runtime/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

using nlohmann::json;

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const json& j) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  throw Error("tokenizer.json: unknown Split behavior '" + b +
              "' (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

// HF's NormalizedString::split: turns (range, is_match) pieces into the kept sub-pieces of `in`.
void split_by(const std::vector<Regex::Piece>& matches, Behavior behavior, const TextPiece& in,
              std::vector<TextPiece>& out) {
  struct Span {
    size_t start, end;
    bool remove;
  };
  thread_local std::vector<Span> spans;
  spans.clear();
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& m : matches) spans.push_back({m.start, m.end, false});
      break;
    case Behavior::kRemoved:
      for (const auto& m : matches) spans.push_back({m.start, m.end, m.is_match});
      break;
    case Behavior::kContiguous: {
      bool previous = false;
      for (const auto& m : matches) {
        if (m.is_match == previous && !spans.empty()) spans.back().end = m.end;
        else spans.push_back({m.start, m.end, false});
        previous = m.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous = false;
      for (const auto& m : matches) {
        if (m.is_match && !previous && !spans.empty()) spans.back().end = m.end;
        else spans.push_back({m.start, m.end, false});
        previous = m.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous && !spans.empty()) spans.back().start = it->start;
        else spans.push_back({it->start, it->end, false});
        previous = it->is_match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    }
  }
  for (const Span& s : spans) {
    if (s.remove || s.start == s.end) continue;
    out.push_back({in.text.substr(s.start, s.end - s.start), in.at_origin && s.start == 0});
  }
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void split(const TextPiece& in, std::vector<TextPiece>& out, TextArena&) const override {
    thread_local std::vector<Regex::Piece> matches;
    matches = pattern_->find_matches(in.text);
    if (invert_)
      for (auto& m : matches) m.is_match = !m.is_match;
    split_by(matches, behavior_, in, out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(byte_level::kGpt2Pattern);
  }
  void set_map_bytes(bool map) { map_bytes_ = map; }
  void split(const TextPiece& in, std::vector<TextPiece>& out, TextArena& arena) const override {
    TextPiece piece = in;
    if (add_prefix_space_ && piece.text.front() != ' ') {
      std::string spaced;
      spaced.reserve(piece.text.size() + 1);
      spaced.push_back(' ');
      spaced.append(piece.text);
      piece.text = arena.keep(std::move(spaced));
    }
    auto emit = [&](size_t start, size_t end) {
      std::string_view t = piece.text.substr(start, end - start);
      if (map_bytes_) {
        std::string mapped;
        byte_level::append_mapped(mapped, t);
        t = arena.keep(std::move(mapped));
      }
      out.push_back({t, piece.at_origin && start == 0});
    };
    if (!regex_) {
      emit(0, piece.text.size());
      return;
    }
    size_t prev = 0;
    regex_->for_each_match(piece.text, [&](Regex::Match m) {
      if (prev != m.start) emit(prev, m.start);
      if (m.start != m.end) emit(m.start, m.end);
      prev = m.end;
    });
    if (prev != piece.text.size()) emit(prev, piece.text.size());
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
  bool map_bytes_ = true;
};

enum class PrependScheme { kFirst, kNever, kAlways };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split), finder_(replacement_, true) {}
  void split(const TextPiece& in, std::vector<TextPiece>& out, TextArena& arena) const override {
    std::string s;
    s.reserve(in.text.size() + replacement_.size());
    for (char c : in.text) {
      if (c == ' ') s += replacement_;
      else s += c;
    }
    const bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && in.at_origin)))
      s.insert(0, replacement_);
    TextPiece piece{arena.keep(std::move(s)), in.at_origin};
    if (!split_) {
      out.push_back(piece);
      return;
    }
    split_by(finder_.find_matches(piece.text), Behavior::kMergedWithNext, piece, out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Regex finder_;
};

bool bool_field(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(std::string("tokenizer.json: pre_tokenizer field \"") + key + "\" must be a boolean");
  return it->get<bool>();
}

void build(const json& j, std::vector<std::unique_ptr<PreTokenizer>>& steps) {
  if (j.is_null()) return;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error("tokenizer.json: a pre_tokenizer must be an object with a \"type\"");
  const std::string& type = j["type"].get_ref<const std::string&>();
  if (type == "Sequence") {
    // Nested sequences flatten: each stage runs over all pieces in order either way.
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) throw Error("tokenizer.json: Sequence pre_tokenizer has no \"pretokenizers\" array");
    for (const json& step : *it) build(step, steps);
  } else if (type == "Split") {
    if (!j.contains("pattern") || !j.contains("behavior"))
      throw Error("tokenizer.json: Split pre_tokenizer needs \"pattern\" and \"behavior\"");
    steps.push_back(std::make_unique<SplitPreTokenizer>(make_pattern(j["pattern"], "Split pre_tokenizer"),
                                                        parse_behavior(j["behavior"]), bool_field(j, "invert", false)));
  } else if (type == "ByteLevel") {
    steps.push_back(std::make_unique<ByteLevelPreTokenizer>(bool_field(j, "add_prefix_space", true),
                                                            bool_field(j, "use_regex", true)));
  } else if (type == "Metaspace") {
    auto r = j.find("replacement");
    if (r == j.end() || !r->is_string()) throw Error("tokenizer.json: Metaspace needs a \"replacement\" character");
    std::string replacement = r->get<std::string>();
    size_t len = 0;
    if (!replacement.empty()) unicode::next_char(replacement, len);
    if (replacement.empty() || len != replacement.size())
      throw Error("tokenizer.json: Metaspace replacement '" + replacement + "' is not one character");
    PrependScheme scheme = PrependScheme::kAlways;  // HF's default
    if (auto p = j.find("prepend_scheme"); p != j.end() && !p->is_null()) {
      const std::string s = p->is_string() ? p->get<std::string>() : "";
      if (s == "first") scheme = PrependScheme::kFirst;
      else if (s == "never") scheme = PrependScheme::kNever;
      else if (s == "always") scheme = PrependScheme::kAlways;
      else throw Error("tokenizer.json: unknown Metaspace prepend_scheme '" + s + "' (first, never, always)");
    }
    // The legacy add_prefix_space = false means "never"; HF refuses it beside another scheme.
    if (auto a = j.find("add_prefix_space"); a != j.end() && a->is_boolean() && !a->get<bool>()) {
      if (scheme != PrependScheme::kNever)
        throw Error("tokenizer.json: Metaspace add_prefix_space does not match declared prepend_scheme");
    }
    steps.push_back(std::make_unique<MetaspacePreTokenizer>(replacement, scheme, bool_field(j, "split", true)));
  } else {
    throw Error("tokenizer.json: unsupported pre_tokenizer type '" + type +
                "' (supported: Split, ByteLevel, Metaspace, Sequence)");
  }
}

}  // namespace

PreTokenizerPipeline::PreTokenizerPipeline(const json& j) {
  build(j, steps_);
  if (!steps_.empty()) {
    if (auto* bl = dynamic_cast<ByteLevelPreTokenizer*>(steps_.back().get())) {
      bl->set_map_bytes(false);
      byte_level_output_ = true;
    }
  }
}

PreTokenizerPipeline::~PreTokenizerPipeline() = default;

void PreTokenizerPipeline::run(std::vector<TextPiece>& pieces, TextArena& arena) const {
  thread_local std::vector<TextPiece> next;
  for (const auto& step : steps_) {
    next.clear();
    for (const TextPiece& p : pieces) step->split(p, next, arena);
    pieces.swap(next);
  }
}

}  // namespace nanovllm
