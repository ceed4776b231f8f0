#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

using nlohmann::json;

namespace {

// Maps every token's characters back to bytes and decodes all of them as one UTF-8 string,
// lossily. A token with a character outside the byte map contributes its UTF-8 as it is.
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    const auto& t = byte_level::tables();
    std::string bytes;
    for (const std::string& tok : tokens) {
      const size_t mark = bytes.size();
      bool mapped = true;
      for (size_t i = 0; i < tok.size();) {
        char32_t c = unicode::next_char(tok, i);
        if (c >= 512 || t.char_to_byte[c] < 0) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(t.char_to_byte[c]));
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes += tok;
      }
    }
    tokens.assign(1, unicode::utf8_lossy(bytes));
  }
};

// Runs of <0xXX> tokens become the bytes they stand for: their UTF-8 text when the run is valid
// UTF-8, else one U+FFFD per byte.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (unicode::find_invalid_utf8(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (std::string& tok : tokens) {
      int byte = parse_byte_token(tok);
      if (byte >= 0) {
        run.push_back(static_cast<char>(byte));
        continue;
      }
      flush();
      out.push_back(std::move(tok));
    }
    flush();
    tokens.swap(out);
  }

 private:
  // "<0xXX>" -> XX, as Rust's u8::from_str_radix(.., 16) reads the two characters (which takes
  // a leading '+' and either case), or -1.
  static int parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    auto hex = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (t[3] == '+') return hex(t[4]);
    int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters from each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& tok : tokens) {
      size_t begin = 0;
      for (size_t k = 0; k < start_ && tok.compare(begin, content_.size(), content_) == 0 && begin < tok.size(); ++k)
        begin += content_.size();
      size_t end = tok.size();
      for (size_t k = 0; k < stop_ && end >= begin + content_.size() &&
                         tok.compare(end - content_.size(), content_.size(), content_) == 0; ++k)
        end -= content_.size();
      tok = tok.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& tok : tokens) {
      std::string out;
      for (const auto& p : pattern_->find_matches(tok)) {
        if (p.is_match) out += content_;
        else out.append(tok, p.start, p.end - p.start);
      }
      tok.swap(out);
    }
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

// Replacement characters become spaces, except in the first token when a prefix space was
// prepended on encoding (prepend_scheme other than "never"), where they are dropped.
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_in_first) : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& tok = tokens[i];
      std::string out;
      for (size_t k = 0; k < tok.size();) {
        if (tok.compare(k, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && drop_in_first_)) out += ' ';
          k += replacement_.size();
        } else {
          out += tok[k++];
        }
      }
      tok.swap(out);
    }
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : steps_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

std::string one_char(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) throw Error(std::string("tokenizer.json: ") + what + " needs a \"" + key + "\" character");
  std::string s = it->get<std::string>();
  size_t len = 0;
  if (!s.empty()) unicode::next_char(s, len);
  if (s.empty() || len != s.size()) throw Error(std::string("tokenizer.json: ") + what + " \"" + key + "\" '" + s + "' is not one character");
  return s;
}

size_t count_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) throw Error(std::string("tokenizer.json: Strip decoder needs a non-negative integer \"") + key + "\"");
  return it->get<size_t>();
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error("tokenizer.json: a decoder must be an object with a \"type\"");
  const std::string& type = j["type"].get_ref<const std::string&>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") return std::make_unique<StripDecoder>(one_char(j, "content", "Strip decoder"), count_field(j, "start"), count_field(j, "stop"));
  if (type == "Replace") {
    if (!j.contains("pattern") || !j.contains("content") || !j["content"].is_string())
      throw Error("tokenizer.json: Replace decoder needs \"pattern\" and a string \"content\"");
    return std::make_unique<ReplaceDecoder>(make_pattern(j["pattern"], "Replace decoder"), j["content"].get<std::string>());
  }
  if (type == "Metaspace") {
    std::string scheme = "always";
    if (auto p = j.find("prepend_scheme"); p != j.end() && p->is_string()) scheme = p->get<std::string>();
    if (scheme != "always" && scheme != "first" && scheme != "never")
      throw Error("tokenizer.json: unknown Metaspace prepend_scheme '" + scheme + "' (first, never, always)");
    if (auto a = j.find("add_prefix_space"); a != j.end() && a->is_boolean() && !a->get<bool>()) {
      if (scheme != "never") throw Error("tokenizer.json: Metaspace add_prefix_space does not match declared prepend_scheme");
    }
    return std::make_unique<MetaspaceDecoder>(one_char(j, "replacement", "Metaspace decoder"), scheme != "never");
  }
  if (type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) throw Error("tokenizer.json: Sequence decoder has no \"decoders\" array");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const json& step : *it)
      if (auto d = make_decoder(step)) steps.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  throw Error("tokenizer.json: unsupported decoder type '" + type +
              "' (supported: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence)");
}

}  // namespace nanovllm
