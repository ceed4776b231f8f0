// Text in and out through the model's tokenizer: string prompts, streamed output text equal to
// decode(output ids), and stop strings matched across token boundaries and cut from the text.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/llm_engine.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"
#include "tokenizer/tokenizer.h"

namespace nanovllm {
namespace {

const std::filesystem::path kModel =
    std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "models" / "qwen3-tied-f32-g2-d64";  // has a tokenizer

SamplingParams greedy(int n) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

TEST(EngineText, StringPromptsAndOutputTextEqualDecode) {
  LLM llm(kModel.string());
  ASSERT_TRUE(llm.engine().has_tokenizer());
  const auto tok = Tokenizer::from_folder(kModel);
  const std::string prompt = "def fibonacci(n):\n    ";
  const auto by_text = llm.generate({prompt}, greedy(24))[0];
  const auto by_ids = llm.generate({tok->encode(prompt, true)}, greedy(24))[0];
  EXPECT_EQ(by_text.token_ids, by_ids.token_ids);
  EXPECT_EQ(by_text.num_prompt_tokens, static_cast<int>(tok->encode(prompt, true).size()));
  EXPECT_EQ(by_text.text, tok->decode(by_text.token_ids, true));
  EXPECT_FALSE(by_text.text.empty());
}

TEST(EngineText, StopStringsAcrossTokenBoundariesAreCutFromTheText) {
  LLM llm(kModel.string());
  const auto tok = Tokenizer::from_folder(kModel);
  const std::vector<int32_t> prompt = tok->encode("import os\nimport sys\n", true);
  const auto free_run = llm.generate({prompt}, greedy(32))[0];
  ASSERT_GE(free_run.token_ids.size(), 8u);
  // Find a token boundary inside the text with text on both sides: a stop string that
  // straddles two tokens.
  std::string before;
  size_t boundary = 0, k = 0;
  for (; k + 1 < free_run.token_ids.size(); ++k) {
    before = tok->decode(std::vector<int32_t>(free_run.token_ids.begin(), free_run.token_ids.begin() + k + 1), true);
    if (k >= 3 && !before.empty() && before.size() < free_run.text.size() &&
        free_run.text.compare(0, before.size(), before) == 0) {
      boundary = before.size();
      break;
    }
  }
  ASSERT_GT(boundary, 0u);
  const std::string stop = free_run.text.substr(boundary - 1, 2);
  const size_t first = free_run.text.find(stop);
  SamplingParams p = greedy(32);
  p.stop = {stop};
  const auto out = llm.generate({prompt}, p)[0];
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(out.text, free_run.text.substr(0, first)) << "stop string '" << stop << "'";
  EXPECT_LT(out.token_ids.size(), free_run.token_ids.size());
  EXPECT_TRUE(std::equal(out.token_ids.begin(), out.token_ids.end(), free_run.token_ids.begin()));
  // Of several stop strings, the earliest in the text wins.
  p.stop = {free_run.text.substr(free_run.text.size() - 3), stop};
  EXPECT_EQ(llm.generate({prompt}, p)[0].text, free_run.text.substr(0, std::min(first, free_run.text.find(p.stop[0]))));
}

}  // namespace
}  // namespace nanovllm
