// Decoders of tokenizer.json: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace and
// Sequence. Like Hugging Face's decode_chain, each maps the list of token strings to a new list;
// decode() joins the final list. Anything else is refused with an Error naming its type.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace nanovllm {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// The "decoder" field; nullptr for JSON null (tokens are then joined with spaces, as HF does).
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

}  // namespace nanovllm
