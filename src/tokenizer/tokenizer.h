// Hugging Face tokenizer.json in C++: text -> ids and back, token-for-token equal to the
// `tokenizers` library (0.23) for BPE models (byte-level like GPT-2/Llama 3/Qwen, and
// SentencePiece-style with byte fallback like Llama 2/Gemma).
//
// encode(text):
//   1. added tokens with normalized = false are cut out of the raw text (AddedVocabulary);
//   2. each remaining piece is normalized on its own (Normalizer), then the added tokens with
//      normalized = true are cut out of it;
//   3. each remaining piece is pre-tokenized (PreTokenizerPipeline) and each pre-token goes
//      through the BPE model (BpeModel, with a per-thread cache);
//   4. the post-processor adds bos/eos ids when add_special_tokens.
// decode(ids): ids -> token strings (added tokens first, then the model's vocabulary; unknown ids
// are skipped, as HF does) -> the decoder chain -> one string.
//
// Every method is const and safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nanovllm {

class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PostProcessor;
class PreTokenizerPipeline;

// What the engine and the chat-template renderer need from tokenizer_config.json.
struct TokenizerConfig {
  std::string bos_token, eos_token, pad_token, unk_token;  // empty when absent or null
  std::string chat_template;  // the template; of a list of named templates, the "default" one
  std::string raw_json;       // the whole file, for the template renderer ("" when absent)
};

// Parses tokenizer_config.json text (empty text: an empty config). Special-token fields may be
// strings or {"content": ...} objects. Throws Error on malformed JSON.
TokenizerConfig parse_tokenizer_config(const std::string& json_text);

class Tokenizer {
 public:
  // Loads tokenizer.json and (if present) tokenizer_config.json from a model folder.
  static std::unique_ptr<Tokenizer> from_folder(const std::filesystem::path& dir);
  static std::unique_ptr<Tokenizer> from_json(const std::string& tokenizer_json,
                                              const std::string& tokenizer_config_json /* may be empty */);
  ~Tokenizer();

  // Throws Error for text that is not valid UTF-8 (naming the byte offset).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids without a token (negative, or past the vocabulary) are skipped, as HF does.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // One past the largest id (model vocabulary and added tokens): the size of an id table.
  // Equals HF's get_vocab_size(with_added_tokens=True) when the ids are dense, as in every
  // published tokenizer.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  const TokenizerConfig& config() const { return config_; }

  // Token strings of `ids` as decode() feeds them to the decoder (after skipping). Used by the
  // streaming detokenizer.
  void append_tokens(std::span<const int32_t> ids, bool skip_special_tokens, std::vector<std::string>& out) const;
  std::string decode_tokens(std::vector<std::string> tokens) const;
  // True when `id` is a "<0xXX>" byte token and the decoder has ByteFallback, whose text for
  // a run of byte tokens is only known once the run ends.
  bool continues_byte_run(int32_t id) const;
  // True when the decoder is ByteLevel and the bytes of `ids` end inside a UTF-8 character that
  // more bytes could still complete (decode shows U+FFFD there for now).
  bool ends_inside_character(std::span<const int32_t> ids) const;

 private:
  Tokenizer();
  void encode_piece(std::string_view text, bool at_origin, std::vector<int32_t>& ids) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<AddedVocabulary> added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizerPipeline> pre_tokenizer_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  TokenizerConfig config_;
  bool byte_fallback_decoder_ = false, byte_level_decoder_ = false;
};

// Streaming detokenizer: push ids one at a time and get the newly completed text. It never
// emits half a UTF-8 character (it holds text back while the bytes end inside a character, or
// a ByteFallback byte run is open), and the concatenation of all pieces plus flush() equals
// decode(all ids). It decodes a short window of recent ids, not the whole sequence, so a push
// costs the same at token 10 and at token 10,000 (the scheme of HF's DecodeStream).
class StreamingDetokenizer {
 public:
  StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string flush();  // the held-back rest (possibly with U+FFFD); the stream starts over

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // the window: ids since the prefix began
  size_t prefix_end_ = 0;     // ids_[0, prefix_end_) decode to prefix_text_, already emitted
  std::string prefix_text_;
};

}  // namespace nanovllm
