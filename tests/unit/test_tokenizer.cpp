// Tokenizer unit tests: refusals and errors (unknown components named, malformed files, invalid
// UTF-8, out-of-range ids), the Unicode pieces (NFC against Unicode's own conformance file,
// lossy UTF-8 as Rust does it, Oniguruma's \s and \w), added-token flags, tokenizer_config.json,
// and encoding from many threads. Equality with Hugging Face on real tokenizers is
// test_tokenizer_goldens.cpp.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/error.h"
#include "test_tokenizer_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace nanovllm {
namespace {

using nlohmann::json;

// A small byte-level BPE tokenizer.json: the 256 byte characters, "h e", "he l", "hel l",
// "hell o" merges, and the given overrides of top-level fields.
json tiny_tokenizer(const json& overrides = json::object()) {
  const char* byte_chars[] = {"h", "e", "l", "o", " ", "w", "r", "d"};
  json vocab = json::object();
  int id = 0;
  for (const char* c : byte_chars) vocab[c] = id++;
  vocab["\xc4\xa0"] = id++;  // "Ġ", the byte-level space
  for (const char* t : {"he", "hel", "hell", "hello"}) vocab[t] = id++;
  json j = {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", nullptr},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "he l", "hel l", "hell o"}}}}};
  for (auto& [k, v] : overrides.items()) j[k] = v;
  return j;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::unique_ptr<Tokenizer> load(const json& j) { return Tokenizer::from_json(j.dump(), ""); }

TEST(TokenizerErrors, UnknownModelTypeIsNamed) {
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    json j = tiny_tokenizer();
    j["model"]["type"] = type;
    EXPECT_NE(error_of([&] { load(j); }).find(std::string("unsupported model type '") + type + "'"), std::string::npos);
  }
}

TEST(TokenizerErrors, UnknownComponentsAreNamed) {
  EXPECT_NE(error_of([&] { load(tiny_tokenizer({{"normalizer", {{"type", "Lowercase"}}}})); }).find("'Lowercase'"), std::string::npos);
  EXPECT_NE(error_of([&] { load(tiny_tokenizer({{"pre_tokenizer", {{"type", "Whitespace"}}}})); }).find("'Whitespace'"), std::string::npos);
  EXPECT_NE(error_of([&] { load(tiny_tokenizer({{"decoder", {{"type", "WordPiece"}}}})); }).find("'WordPiece'"), std::string::npos);
  EXPECT_NE(error_of([&] { load(tiny_tokenizer({{"post_processor", {{"type", "BertProcessing"}}}})); }).find("'BertProcessing'"),
            std::string::npos);
  json nested = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}};
  EXPECT_NE(error_of([&] { load(tiny_tokenizer({{"pre_tokenizer", nested}})); }).find("'Digits'"), std::string::npos);
}

TEST(TokenizerErrors, MalformedFilesAreRefused) {
  EXPECT_NE(error_of([] { Tokenizer::from_json("{not json", ""); }).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::from_json("[1, 2]", ""); }).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::from_json("{\"version\": \"1.0\"}", ""); }).find("no \"model\""), std::string::npos);
  json j = tiny_tokenizer();
  j["version"] = "2.0";
  EXPECT_NE(error_of([&] { load(j); }).find("unknown tokenizer version"), std::string::npos);
  j = tiny_tokenizer();
  j["model"]["merges"].push_back("x y");
  EXPECT_NE(error_of([&] { load(j); }).find("merge token 'x' is not in the vocabulary"), std::string::npos);
  j = tiny_tokenizer();
  j["model"]["merges"].push_back("o w");  // "ow" is not a token
  EXPECT_NE(error_of([&] { load(j); }).find("merged token 'ow'"), std::string::npos);
  j = tiny_tokenizer();
  j["model"]["merges"].push_back("h e l");
  EXPECT_NE(error_of([&] { load(j); }).find("not two tokens"), std::string::npos);
  j = tiny_tokenizer();
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(error_of([&] { load(j); }).find("dropout"), std::string::npos);
  j = tiny_tokenizer();
  j["model"]["vocab"]["bad"] = -3;
  EXPECT_NE(error_of([&] { load(j); }).find("out of range"), std::string::npos);
  j = tiny_tokenizer({{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}}});
  EXPECT_NE(error_of([&] { load(j); }).find("cannot compile regex '(unclosed'"), std::string::npos);
  j = tiny_tokenizer({{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}}}});
  EXPECT_NE(error_of([&] { load(j); }).find("unknown Split behavior 'Sideways'"), std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::from_folder("/nonexistent/model"); }).find("not found"), std::string::npos);
  EXPECT_NE(error_of([] { parse_tokenizer_config("{\"bos_token\": 5}"); }).find("bos_token"), std::string::npos);
}

TEST(TokenizerErrors, InvalidUtf8InputIsAnError) {
  auto tok = load(tiny_tokenizer());
  for (std::string bad : {std::string("\xff"), std::string("he\xc3"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("ok\x80")}) {
    EXPECT_NE(error_of([&] { tok->encode(bad); }).find("not valid UTF-8"), std::string::npos) << json(bad.size()).dump();
  }
  EXPECT_EQ(tok->encode("hello"), (std::vector<int32_t>{12}));
}

TEST(TokenizerErrors, UnknownIdsAreSkippedByDecodeAsHuggingFaceDoes) {
  auto tok = load(tiny_tokenizer());
  EXPECT_EQ(tok->decode(std::vector<int32_t>{-1, 12, 1 << 30, 4, 99}), "hello  ");  // no decoder: joined by spaces
  EXPECT_EQ(tok->id_to_token(-5), std::nullopt);
  EXPECT_EQ(tok->id_to_token(13), std::nullopt);
  EXPECT_EQ(tok->token_to_id("nope"), std::nullopt);
  EXPECT_EQ(tok->vocab_size(), 13);
}

TEST(TokenizerModel, MergesAsPairsEqualMergesAsStrings) {
  json pairs = tiny_tokenizer();
  pairs["model"]["merges"] = json::array({json::array({"h", "e"}), json::array({"he", "l"}), json::array({"hel", "l"}), json::array({"hell", "o"})});
  auto a = load(tiny_tokenizer()), b = load(pairs);
  for (const char* s : {"hello", "hell", "hhe", "lleh", "oh hello"}) EXPECT_EQ(a->encode(s), b->encode(s)) << s;
  EXPECT_EQ(a->encode("hell"), (std::vector<int32_t>{11}));
}

TEST(TokenizerModel, ByteFallbackAndUnk) {
  // SentencePiece style: "<0xXX>" byte tokens for characters outside the vocabulary.
  json j = tiny_tokenizer({{"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}}});
  j["model"]["byte_fallback"] = true;
  j["model"]["vocab"]["<0xC3>"] = 100;
  j["model"]["vocab"]["<0xA9>"] = 101;
  auto tok = load(j);
  EXPECT_EQ(tok->encode("h\xc3\xa9"), (std::vector<int32_t>{0, 100, 101}));  // "hé"
  EXPECT_EQ(tok->decode(std::vector<int32_t>{0, 100, 101}), "h\xc3\xa9");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{0, 100}), "h\xef\xbf\xbd");  // a lone byte: U+FFFD
  // Without byte fallback, an unknown character becomes unk (fused when fuse_unk).
  json u = tiny_tokenizer();
  u["model"]["unk_token"] = "o";
  u["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(u)->encode("h\xc3\xa9\xc3\xa9h"), (std::vector<int32_t>{0, 3, 0}));
  u["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(u)->encode("h\xc3\xa9\xc3\xa9h"), (std::vector<int32_t>{0, 3, 3, 0}));
}

TEST(TokenizerAddedTokens, FlagsOnTheGpt2StyleTokenizer) {
  const Tokenizer* tok = tokenizer_test::reference_tokenizer("gpt2-style");
  ASSERT_NE(tok, nullptr);
  const int32_t mask = *tok->token_to_id("<mask>"), sep = *tok->token_to_id("[SEP]"), zebra = *tok->token_to_id("zebra");
  EXPECT_TRUE(tok->is_special(mask));
  EXPECT_FALSE(tok->is_special(zebra));
  // lstrip: the spaces before <mask> belong to it.
  EXPECT_EQ(tok->encode("x   <mask>", false), (std::vector<int32_t>{*tok->token_to_id("x"), mask}));
  // rstrip: the spaces after [SEP] belong to it.
  EXPECT_EQ(tok->encode("[SEP]   ", false), (std::vector<int32_t>{sep}));
  // single_word: "zebra" matches as a word, not inside "zebras".
  auto has = [](const std::vector<int32_t>& v, int32_t id) { return std::find(v.begin(), v.end(), id) != v.end(); };
  EXPECT_TRUE(has(tok->encode("a zebra!", false), zebra));
  EXPECT_FALSE(has(tok->encode("zebras", false), zebra));
  // skip_special_tokens drops specials only.
  auto ids = tok->encode("a zebra<mask>", false);
  EXPECT_EQ(tok->decode(ids, true), "a zebra");
  EXPECT_EQ(tok->decode(ids, false), "a zebra<mask>");
}

TEST(TokenizerUnicode, NfcConformance) {
  // Unicode's NormalizationTest.txt, source and NFC columns (from gen_unicode_tables.py).
  std::ifstream f(std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "tokenizers" / "nfc_conformance.txt");
  ASSERT_TRUE(f) << "missing tests/fixtures/tokenizers/nfc_conformance.txt";
  auto parse = [](const std::string& hex) {
    std::string out;
    std::stringstream ss(hex);
    std::string cp;
    while (ss >> cp) unicode::append_utf8(out, static_cast<char32_t>(std::stoul(cp, nullptr, 16)));
    return out;
  };
  std::string line;
  size_t n = 0, bad = 0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t semi = line.find(';');
    std::string src = parse(line.substr(0, semi)), want = parse(line.substr(semi + 1));
    ++n;
    if (unicode::nfc(src) != want && ++bad <= 5) ADD_FAILURE() << "NFC of " << line.substr(0, semi);
    if (unicode::nfc(want) != want && ++bad <= 5) ADD_FAILURE() << "NFC is not idempotent on " << line.substr(semi + 1);
  }
  EXPECT_GT(n, 18000u);
  EXPECT_EQ(bad, 0u);
}

TEST(TokenizerUnicode, LossyDecodingReplacesMaximalSubparts) {
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(unicode::utf8_lossy("a\xff" "b"), "a" + r + "b");
  EXPECT_EQ(unicode::utf8_lossy("\xe2\x82"), r);            // a cut character: one U+FFFD
  EXPECT_EQ(unicode::utf8_lossy("\xe2\x82" "A"), r + "A");
  EXPECT_EQ(unicode::utf8_lossy("\xf0\x9f\x98"), r);
  EXPECT_EQ(unicode::utf8_lossy("\xed\xa0\x80"), r + r + r);  // a surrogate: three
  EXPECT_EQ(unicode::utf8_lossy("\xc0\xaf"), r + r);          // an overlong: two
  EXPECT_EQ(unicode::utf8_lossy("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_TRUE(unicode::ends_with_incomplete_utf8("ab\xf0\x9f"));
  EXPECT_FALSE(unicode::ends_with_incomplete_utf8("ab\xff"));
  EXPECT_FALSE(unicode::ends_with_incomplete_utf8("ab\xf0\x9f\x98\x80"));
}

TEST(TokenizerUnicode, RegexClassesFollowOniguruma) {
  Regex space("\\s+");
  auto matches = [](const Regex& re, const std::string& s) {
    std::vector<std::string> out;
    re.for_each_match(s, [&](Regex::Match m) { out.push_back(s.substr(m.start, m.end - m.start)); });
    return out;
  };
  EXPECT_EQ(matches(space, "a\xe3\x80\x80" "b"), (std::vector<std::string>{"\xe3\x80\x80"}));  // U+3000 is space
  EXPECT_TRUE(matches(space, "a\xe1\xa0\x8e" "b").empty());  // U+180E is not (PCRE2 alone says it is)
  Regex word("\\w+");
  EXPECT_EQ(matches(word, "e\xcc\x81!"), (std::vector<std::string>{"e\xcc\x81"}));  // marks are word characters
  // Empty matches: one per position, none right after a match (Oniguruma's find_iter).
  Regex empty("x*");
  EXPECT_EQ(matches(empty, "axxb"), (std::vector<std::string>{"", "xx", ""}));
}

TEST(TokenizerConfigFile, SpecialTokensAndTemplates) {
  auto c = parse_tokenizer_config(R"({"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
    "pad_token": null, "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(c.bos_token, "<s>");
  EXPECT_EQ(c.eos_token, "</s>");
  EXPECT_EQ(c.pad_token, "");
  EXPECT_EQ(c.unk_token, "");
  EXPECT_EQ(c.chat_template, "D");
  EXPECT_NE(c.raw_json.find("tool_use"), std::string::npos);
  const Tokenizer* qwen = tokenizer_test::reference_tokenizer("qwen3");
  ASSERT_NE(qwen, nullptr);
  EXPECT_EQ(qwen->config().eos_token, "<|im_end|>");
  EXPECT_EQ(qwen->config().pad_token, "<|endoftext|>");
  EXPECT_NE(qwen->config().chat_template.find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(qwen->vocab_size(), 151669);
  EXPECT_EQ(qwen->token_to_id("<|im_end|>"), 151645);
  EXPECT_TRUE(qwen->is_special(151645));
  EXPECT_FALSE(qwen->is_special(151667));  // <think>: added, not special
}

TEST(TokenizerStreaming, HoldsSplitCharactersAndNotGarbage) {
  const Tokenizer* qwen = tokenizer_test::reference_tokenizer("qwen3");
  const Tokenizer* llama2 = tokenizer_test::reference_tokenizer("llama2");
  ASSERT_NE(qwen, nullptr);
  ASSERT_NE(llama2, nullptr);
  // A character split over byte-level tokens comes out whole, once complete.
  const std::string text = "x \xf0\x9d\x94\x97\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb y";
  auto ids = qwen->encode(text, false);
  StreamingDetokenizer s(*qwen, false);
  std::string all;
  for (int32_t id : ids) {
    std::string piece = s.push(id);
    EXPECT_EQ(unicode::find_invalid_utf8(piece), std::string::npos);
    all += piece;
  }
  EXPECT_EQ(all + s.flush(), text);
  // Stray continuation bytes can never complete: each U+FFFD comes out at once, so a model
  // that emits garbage does not make the stream hold (and re-decode) ever more tokens.
  const int32_t stray = *qwen->token_to_id(byte_level::tables().byte_to_utf8[0x80]);
  StreamingDetokenizer g(*qwen, false);
  for (int k = 0; k < 100; ++k) EXPECT_EQ(g.push(stray), "\xef\xbf\xbd");
  // Llama 2's byte fallback: an open run of byte tokens is held until the run ends.
  StreamingDetokenizer b(*llama2, false);
  for (const char* byte : {"<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}) EXPECT_EQ(b.push(*llama2->token_to_id(byte)), "");
  std::string rest = b.push(*llama2->token_to_id("\xe2\x96\x81" "a"));
  EXPECT_EQ(rest, "\xf0\x9f\x98\x80 a");
  EXPECT_EQ(b.flush(), "");
}

TEST(TokenizerThreads, ManyThreadsEncodeAsOne) {
  const Tokenizer* tok = tokenizer_test::reference_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  auto corpus = tokenizer_test::read_jsonl(tokenizer_test::goldens_dir() / "corpus.jsonl");
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : corpus) want.push_back(tok->encode(s.get<std::string>()));
  std::vector<std::thread> threads;
  std::vector<size_t> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size(); i += 2)  // overlapping halves
        if (tok->encode(corpus[i].get<std::string>()) != want[i]) ++mismatches[t];
    });
  for (auto& th : threads) th.join();
  for (size_t m : mismatches) EXPECT_EQ(m, 0u);
}

}  // namespace
}  // namespace nanovllm
