#include "engine/text_codec.h"

#include "tokenizer/tokenizer.h"

namespace nanovllm {
namespace {

class TokenizerStream final : public TextStream {
 public:
  TokenizerStream(const Tokenizer& t, bool skip_special) : stream_(t, skip_special) {}
  std::string push(int32_t id) override { return stream_.push(id); }
  std::string flush() override { return stream_.flush(); }

 private:
  StreamingDetokenizer stream_;
};

// Output text is the decode of the output ids alone (as tokenizer.decode(output_ids) gives it),
// streamed; prompts are encoded with the model's special tokens (bos where it has one).
class TokenizerCodec final : public TextCodec {
 public:
  explicit TokenizerCodec(std::unique_ptr<Tokenizer> t) : tok_(std::move(t)) {}
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override {
    return tok_->encode(text, add_special_tokens);
  }
  std::unique_ptr<TextStream> stream(bool skip_special_tokens) const override {
    return std::make_unique<TokenizerStream>(*tok_, skip_special_tokens);
  }

 private:
  std::unique_ptr<Tokenizer> tok_;
};

}  // namespace

std::unique_ptr<TextCodec> load_text_codec(const std::filesystem::path& model_dir) {
  if (!std::filesystem::exists(model_dir / "tokenizer.json")) return nullptr;
  return std::make_unique<TokenizerCodec>(Tokenizer::from_folder(model_dir));
}

}  // namespace nanovllm
