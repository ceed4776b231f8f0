// Streaming (LLMEngine::step(deltas), LLM::generate with a callback) and chat templates through
// the engine: deltas add up to the final output, text that a stop string could still cut is held
// back, aborts are reported, and a callback that throws leaves nothing in the engine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

#include "engine/llm_engine.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;
const std::filesystem::path kModel = kFixtures / "models" / "qwen3-tied-f32-g2-d64";  // has a tokenizer

SamplingParams greedy(int n) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

Config small() {
  Config c;
  c.num_kvcache_blocks = 32;
  return c;
}

struct Streamed {
  std::string text;
  std::vector<int32_t> ids;
  int deltas = 0, finished = 0;
  std::string finish_reason;
};

TEST(EngineStream, DeltasAddUpToTheOutputs) {
  LLM llm(kModel.string(), small());
  const std::vector<Prompt> prompts = {std::string("def fibonacci(n):"), std::string("import os\n"),
                                       std::vector<int32_t>{1, 2, 3}};
  std::vector<SamplingParams> params = {greedy(20), greedy(7), greedy(12)};
  std::map<size_t, Streamed> got;
  const auto outs = llm.generate(prompts, params, [&](size_t i, const RequestDelta& d) {
    Streamed& s = got[i];
    EXPECT_EQ(s.finished, 0) << "a delta after the request finished";
    s.text += d.text;
    s.ids.insert(s.ids.end(), d.token_ids.begin(), d.token_ids.end());
    ++s.deltas;
    if (d.finished) ++s.finished, s.finish_reason = d.finish_reason;
  });
  const auto plain = llm.generate(prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].ids, outs[i].token_ids);
    EXPECT_EQ(got[i].text, outs[i].text);
    EXPECT_EQ(got[i].deltas, params[i].max_tokens);  // one token a step
    EXPECT_EQ(got[i].finished, 1);
    EXPECT_EQ(got[i].finish_reason, "length");
    EXPECT_EQ(outs[i].token_ids, plain[i].token_ids);  // streaming changes nothing
    EXPECT_EQ(outs[i].text, plain[i].text);
  }
}

TEST(EngineStream, TextAStopStringCouldCutIsHeldBack) {
  LLM llm(kModel.string(), small());
  const std::string prompt = "import os\nimport sys\n";
  const RequestOutput free_run = llm.generate({prompt}, greedy(32))[0];
  ASSERT_GE(free_run.text.size(), 12u);
  SamplingParams p = greedy(32);
  p.stop = {free_run.text.substr(8, 3)};  // first seen at or before byte 8
  const std::string cut = free_run.text.substr(0, free_run.text.find(p.stop[0]));
  std::string streamed;
  const RequestOutput out = llm.generate({prompt}, {p}, [&](size_t, const RequestDelta& d) {
    streamed += d.text;
    // Everything reported is final: a prefix of the cut text.
    EXPECT_TRUE(streamed.size() <= cut.size() && cut.compare(0, streamed.size(), streamed) == 0) << streamed;
  })[0];
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(streamed, out.text);
  EXPECT_EQ(out.text, free_run.text.substr(0, free_run.text.find(p.stop[0])));
}

TEST(EngineStream, AbortedRequestsReportAFinishedDelta) {
  LLMEngine engine([] {
    Config c = small();
    c.model = kModel.string();
    return c;
  }());
  const int64_t a = engine.add_request(std::string("hello"), greedy(50));
  const int64_t b = engine.add_request(std::string("world"), greedy(3));
  std::vector<RequestDelta> deltas;
  do engine.step(deltas);  // with async scheduling the first tokens come from the second call
  while (deltas.empty() && engine.has_unfinished());
  ASSERT_EQ(deltas.size(), 2u);
  engine.abort(a);
  std::map<int64_t, RequestDelta> last;
  while (engine.has_unfinished()) {
    engine.step(deltas);
    for (auto& d : deltas) last[d.request_id] = d;
  }
  EXPECT_TRUE(last[a].finished);
  EXPECT_EQ(last[a].finish_reason, "abort");
  EXPECT_TRUE(last[a].token_ids.empty());
  EXPECT_EQ(last[b].finish_reason, "length");
  EXPECT_EQ(engine.num_free_kv_blocks(), engine.num_kv_blocks());
}

TEST(EngineStream, ACallbackThatThrowsLeavesTheEngineEmpty) {
  LLM llm(kModel.string(), small());
  int calls = 0;
  EXPECT_THROW(llm.generate({std::string("a"), std::string("b")}, {greedy(30), greedy(30)},
                            [&](size_t, const RequestDelta&) {
                              if (++calls == 5) throw std::runtime_error("stop here");
                            }),
               std::runtime_error);
  EXPECT_FALSE(llm.engine().has_unfinished());
  EXPECT_EQ(llm.engine().num_free_kv_blocks(), llm.engine().num_kv_blocks());
  EXPECT_EQ(llm.generate({std::string("a")}, greedy(4))[0].token_ids.size(), 4u);
}

TEST(EngineStream, LoadProgressReachesTheTotal) {
  int64_t last_done = -1, total = 0;
  int calls = 0;
  LLM llm(kModel.string(), small(), [&](int64_t done, int64_t all) {
    EXPECT_GE(done, last_done);
    last_done = done, total = all, ++calls;
  });
  EXPECT_GT(calls, 2);
  EXPECT_GT(total, 0);
  EXPECT_EQ(last_done, total);
}

// A model folder with the fixture's files and a chat template.
std::filesystem::path model_with_template(const std::string& name, const std::string& tpl_json_field) {
  const auto dir = std::filesystem::temp_directory_path() / ("nanovllm-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto& e : std::filesystem::directory_iterator(kModel))
    if (e.path().filename() != "tokenizer_config.json")
      std::filesystem::copy_file(e.path(), dir / e.path().filename(), std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"eos_token": "<|im_end|>", "bos_token": null, "add_bos_token": false, "chat_template": )" << tpl_json_field
      << "}";
  return dir;
}

TEST(EngineChat, TemplatesRenderWithTheSpecialTokensAndChatTokenizesWithoutAddingThem) {
  const auto dir = model_with_template(
      "chat", R"("{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")");
  LLM llm(dir.string(), small());
  ASSERT_TRUE(llm.engine().has_chat_template());
  const std::vector<ChatMessage> conv = {{"system", "S"}, {"user", "Hi"}};
  EXPECT_EQ(llm.apply_chat_template(conv), "<system>S<|im_end|><user>Hi<|im_end|><assistant>");
  EXPECT_EQ(llm.apply_chat_template(conv, false), "<system>S<|im_end|><user>Hi<|im_end|>");
  const auto ids = llm.engine().tokenize(llm.apply_chat_template(conv), false);
  const auto by_chat = llm.chat({conv}, greedy(6))[0];
  const auto by_ids = llm.generate({ids}, greedy(6))[0];
  EXPECT_EQ(by_chat.token_ids, by_ids.token_ids);
  EXPECT_EQ(by_chat.num_prompt_tokens, static_cast<int>(ids.size()));
  std::filesystem::remove_all(dir);
}

TEST(EngineChat, ATemplateErrorFailsThatConversationAlone) {
  const auto dir = model_with_template(
      "chat-raise", R"("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0].content }}")");
  LLM llm(dir.string(), small());
  const auto outs = llm.chat({{{"system", "x"}}, {{"user", "hello"}}}, greedy(3));
  EXPECT_EQ(outs[0].finish_reason, "error");
  EXPECT_THAT(outs[0].error, HasSubstr("first must be user"));
  EXPECT_EQ(outs[1].token_ids.size(), 3u);
  std::filesystem::remove_all(dir);
}

TEST(EngineChat, AModelWithoutATemplateOrWithABrokenOneStillGenerates) {
  LLM plain(kModel.string(), small());
  EXPECT_FALSE(plain.engine().has_chat_template());
  try {
    plain.apply_chat_template({{"user", "hi"}});
    ADD_FAILURE() << "rendered without a template";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no chat template"));
  }
  const auto dir = model_with_template("chat-broken", R"("{% include 'x' %}")");
  LLM broken(dir.string(), small());
  EXPECT_EQ(broken.generate({std::string("a")}, greedy(2))[0].token_ids.size(), 2u);
  try {
    broken.apply_chat_template({{"user", "hi"}});
    ADD_FAILURE() << "rendered a template with {% include %}";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("tokenizer_config.json"));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nanovllm
