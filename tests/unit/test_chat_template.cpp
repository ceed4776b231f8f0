// Chat templates against Hugging Face: every case of tests/fixtures/chat_templates/*.goldens.json
// (made by scripts/device/make-template-goldens.py with transformers' own renderer, versions in
// VERSIONS.json) must render byte-equal, and must fail where HF failed: with the same message
// when the template called raise_exception.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "tokenizer/chat_template.h"

namespace nanovllm {
namespace {

using nlohmann::ordered_json;

const std::filesystem::path kDir = std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "chat_templates";

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ordered_json manifest() { return ordered_json::parse(slurp(kDir / "templates.json")); }

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  const ordered_json m = manifest();
  for (const auto& [name, entry] : m.items()) names.push_back(name);
  return names;
}

// Where a golden and our render differ: the first differing byte, with context.
std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i >= 60 ? i - 60 : 0;
  const auto show = [](const std::string& s) {
    return ordered_json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  return "first difference at byte " + std::to_string(i) + "\n  want: " + show(want.substr(from, 160)) +
         "\n  got:  " + show(got.substr(from, 160));
}

class ChatTemplateGoldens : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGoldens, RendersByteEqualToHuggingFace) {
  const ordered_json entry = manifest()[GetParam()];
  const ChatTemplate tpl(slurp(kDir / entry["file"].get<std::string>()));
  const ordered_json golden = ordered_json::parse(slurp(kDir / (GetParam() + ".goldens.json")));
  ASSERT_GE(golden["cases"].size(), 30u);
  int rendered = 0, raised = 0;
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ChatTemplateOptions opts;
    opts.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    if (c.contains("enable_thinking")) opts.enable_thinking = c["enable_thinking"].get<bool>();
    if (c.contains("extra")) opts.extra = nlohmann::json::parse(c["extra"].dump());
    if (c.contains("error")) {
      try {
        tpl.render(c["messages"], opts, golden["special_tokens"], c["tools"]);
        ADD_FAILURE() << "rendered, but Hugging Face raised: " << c["error"];
      } catch (const Error& e) {
        // raise_exception's message comes through verbatim; Python's own errors (TypeError,
        // UndefinedError) come with our location prefixed to the same text.
        if (c["error_type"] == "TemplateError")
          EXPECT_EQ(std::string(e.what()), c["error"].get<std::string>());
        else
          EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
      }
      ++raised;
      continue;
    }
    const std::string want = c["expected"].get<std::string>();
    const std::string got = tpl.render(c["messages"], opts, golden["special_tokens"], c["tools"]);
    EXPECT_EQ(got, want) << first_difference(want, got);
    ++rendered;
  }
  std::printf("[ chat template %s: %d renders and %d raises checked ]\n", GetParam().c_str(), rendered, raised);
}

INSTANTIATE_TEST_SUITE_P(ChatTemplate, ChatTemplateGoldens, ::testing::ValuesIn(template_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// The committed templates are the models' own: the fetched tokenizer_config.json files (when
// scripts/fetch-tokenizers.sh has run) carry the same text.
TEST(ChatTemplate, FixturesAreTheTokenizersOwnTemplates) {
  const std::filesystem::path cache = std::filesystem::path(NANOVLLM_SOURCE_DIR) / ".cache" / "tokenizers";
  int checked = 0;
  const ordered_json m = manifest();
  for (const auto& [name, entry] : m.items()) {
    if (!entry.contains("tokenizer")) continue;
    const auto config_path = cache / entry["tokenizer"].get<std::string>() / "tokenizer_config.json";
    if (!std::filesystem::exists(config_path)) continue;
    const auto config = ordered_json::parse(slurp(config_path));
    if (!config.contains("chat_template") || !config["chat_template"].is_string()) continue;  // llama2 has none
    EXPECT_EQ(config["chat_template"].get<std::string>(), slurp(kDir / entry["file"].get<std::string>())) << name;
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no tokenizers in " << cache << " (scripts/fetch-tokenizers.sh)";
}

TEST(ChatTemplate, SortedJsonOverloadRendersTheSame) {
  // nlohmann::json sorts keys: fine for templates that never print a whole object.
  const ChatTemplate tpl(slurp(kDir / "qwen3.jinja"));
  const nlohmann::json messages = {{{"role", "system"}, {"content", "Be brief."}},
                                   {{"role", "user"}, {"content", "Hi"}}};
  ChatTemplateOptions opts;
  opts.enable_thinking = false;
  const nlohmann::json special = {{"eos_token", "<|im_end|>"}, {"bos_token", nullptr}};
  EXPECT_EQ(tpl.render(messages, opts, special),
            "<|im_start|>system\nBe "
            "brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, SpecialTokensMayBeAddedTokenObjects) {
  const ChatTemplate tpl("{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}");
  const nlohmann::json special = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}, {"lstrip", false}}},
                                  {"eos_token", "</s>"},
                                  {"unk_token", nullptr}};
  EXPECT_EQ(tpl.render(nlohmann::json::array(), ChatTemplateOptions{}, special), "<s>|</s>|False");
}

TEST(ChatTemplate, RaiseExceptionSurfacesTheTemplatesMessage) {
  const ChatTemplate tpl(slurp(kDir / "llama2-chat.jinja"));
  const nlohmann::json messages = {{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}};
  try {
    tpl.render(messages, ChatTemplateOptions{}, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplate, UnsupportedSyntaxIsAnErrorWithLineAndColumn) {
  const auto error_of = [](const std::string& source) -> std::string {
    try {
      ChatTemplate tpl(source);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(error_of("{% if x %}\n  {{ x | frobnicate }}\n{% endif %}")
                .find("line 2, column 10: No filter named 'frobnicate'"),
            std::string::npos)
      << error_of("{% if x %}\n  {{ x | frobnicate }}\n{% endif %}");
  EXPECT_NE(error_of("{{ x is frobnicated }}").find("line 1, column 6: No test named 'frobnicated'"),
            std::string::npos);
  EXPECT_NE(error_of("{% extends 'base.html' %}").find("line 1, column 4: Encountered unknown tag 'extends'"),
            std::string::npos);
  EXPECT_NE(error_of("text\n\n   {% call foo() %}{% endcall %}").find("line 3, column 7"), std::string::npos);
  EXPECT_NE(error_of("{{ f(*args) }}").find("line 1, column 6"), std::string::npos);
  EXPECT_NE(error_of("{% if x %}unterminated").find("chat template syntax error at line 1"), std::string::npos);
}

TEST(ChatTemplate, MessagesMustBeAList) {
  const ChatTemplate tpl("{{ messages }}");
  EXPECT_THROW(tpl.render(nlohmann::json::object(), ChatTemplateOptions{}, nlohmann::json::object()), Error);
}

}  // namespace
}  // namespace nanovllm
