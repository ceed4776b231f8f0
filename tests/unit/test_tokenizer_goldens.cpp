// Our tokenizer against Hugging Face tokenizers 0.23 on the goldens of
// tests/fixtures/tokenizers/goldens (scripts/device/make-tokenizer-goldens.py): for every corpus
// string and every reference tokenizer, the ids with and without special tokens, decode round
// trips, decode with skip_special_tokens; HF's decode of random id sequences (broken UTF-8,
// specials); and the streaming detokenizer against decode.
#include <gtest/gtest.h>

#include <iostream>

#include "test_tokenizer_util.h"
#include "tokenizer/unicode.h"

namespace nanovllm {
namespace {

using tokenizer_test::goldens_dir;
using tokenizer_test::ids_of;
using tokenizer_test::read_jsonl;
using tokenizer_test::reference_names;
using tokenizer_test::reference_tokenizer;

std::string streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  StreamingDetokenizer stream(tok, skip);
  std::string all;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    // Never half a character: every piece is valid UTF-8 on its own.
    EXPECT_EQ(unicode::find_invalid_utf8(piece), std::string::npos) << "streamed piece is not valid UTF-8";
    all += piece;
  }
  return all + stream.flush();
}

class TokenizerGoldens : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGoldens, MatchHuggingFace) {
  const std::string name = GetParam();
  const Tokenizer* tok = reference_tokenizer(name);
  ASSERT_NE(tok, nullptr);
  auto corpus = read_jsonl(goldens_dir() / "corpus.jsonl");
  auto goldens = read_jsonl(goldens_dir() / (name + ".jsonl"));
  ASSERT_GE(corpus.size(), 2000u);
  ASSERT_EQ(goldens.size(), 1 + corpus.size() + goldens.at(0)["random_sequences"].get<size_t>());

  size_t ids_ok = 0, ids_bad = 0, dec_ok = 0, dec_bad = 0, stream_ok = 0, stream_bad = 0, roundtrips = 0,
         hf_failed = 0;
  auto report = [&](size_t& bad, const std::string& what) {
    if (++bad <= 8) ADD_FAILURE() << name << ": " << what;
  };
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    const auto& g = goldens[i + 1];
    if (g.contains("error")) {  // HF itself failed on this input: nothing to compare with
      ++hf_failed;
      continue;
    }
    const auto want = ids_of(g["ids"]);
    const auto want_sp = g.contains("ids_sp") ? ids_of(g["ids_sp"]) : want;
    const auto got = tok->encode(text, false);
    const auto got_sp = tok->encode(text, true);
    if (got == want && got_sp == want_sp) ++ids_ok;
    else report(ids_bad, "ids differ for corpus[" + std::to_string(i) + "] " + nlohmann::json(text).dump());

    const std::string dec = g.value("dec", text);
    if (!g.contains("dec")) ++roundtrips;
    const std::string dec_sp = g.value("dec_sp", dec);
    const std::string dec_skip = g.value("dec_skip", dec);
    const std::string got_dec = tok->decode(want, false), got_dec_sp = tok->decode(want_sp, false),
                      got_dec_skip = tok->decode(want_sp, true);
    if (got_dec == dec && got_dec_sp == dec_sp && got_dec_skip == dec_skip) ++dec_ok;
    else report(dec_bad, "decode differs for corpus[" + std::to_string(i) + "] " + nlohmann::json(text).dump() +
                             " got " + nlohmann::json(got_dec).dump() + " / " + nlohmann::json(got_dec_sp).dump() +
                             " / " + nlohmann::json(got_dec_skip).dump());

    if (streamed(*tok, want_sp, false) == got_dec_sp && streamed(*tok, want_sp, true) == got_dec_skip) ++stream_ok;
    else report(stream_bad, "streaming differs from decode for corpus[" + std::to_string(i) + "]");
  }
  size_t rand_ok = 0, rand_bad = 0;
  for (size_t i = 1 + corpus.size(); i < goldens.size(); ++i) {
    const auto& g = goldens[i];
    if (g.contains("error")) {
      ++hf_failed;
      continue;
    }
    const auto ids = ids_of(g["rand"]);
    const std::string d = tok->decode(ids, false), ds = tok->decode(ids, true);
    if (d == g["dec"].get<std::string>() && ds == g["dec_skip"].get<std::string>()) ++rand_ok;
    else report(rand_bad, "decode of random ids " + g["rand"].dump() + " got " + nlohmann::json(d).dump() +
                              " want " + g["dec"].dump());
    if (streamed(*tok, ids, false) == d && streamed(*tok, ids, true) == ds) ++stream_ok;
    else report(stream_bad, "streaming differs from decode for random ids " + g["rand"].dump());
  }
  std::cout << "[ goldens  ] " << name << ": ids " << ids_ok << "/" << corpus.size() << " equal to HF, decode "
            << dec_ok << "/" << corpus.size() << " (round trips " << roundtrips << "), random-id decode " << rand_ok
            << "/" << (goldens.size() - 1 - corpus.size()) << ", streaming " << stream_ok << "/"
            << (goldens.size() - 1) << "\n";
  EXPECT_EQ(ids_bad, 0u);
  EXPECT_EQ(dec_bad, 0u);
  EXPECT_EQ(rand_bad, 0u);
  EXPECT_EQ(stream_bad, 0u);
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (char& c : n)
    if (c == '-') c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerGoldens, ::testing::ValuesIn(reference_names()), param_name);
INSTANTIATE_TEST_SUITE_P(TokenizerVariant, TokenizerGoldens, ::testing::ValuesIn(tokenizer_test::variant_names()),
                         param_name);

}  // namespace
}  // namespace nanovllm
