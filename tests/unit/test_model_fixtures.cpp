// The CPU forward pass against transformers: every fixture model (tests/fixtures/models, made
// by make_fixtures.py with the versions in VERSIONS.json), all prompts in one batch.
//   f32 models:   ||ours - hf|| / ||hf|| < 1e-4
//   every model:  < 1e-4 and the same argmax everywhere against transformers' forward with the
//                 checkpoint's weights upcast to float32, which is what we compute;
//   bf16/f16:     against transformers' forward in the 16-bit dtype: within 2e-2, and no
//                 further from it than transformers' own float32 forward is (see below).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "../test_util.h"
#include "engine/prompt_logits.h"
#include "loader/safetensors.h"
#include "models/model.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;

struct Reference {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> logits, logits_f32;
};

using test::floats;
using test::ints;

Reference load_reference(const std::string& name) {
  const TensorMap t = load_safetensors_file(kFixtures / "reference" / (name + ".safetensors"));
  Reference r;
  for (int i = 0; t.count("prompt." + std::to_string(i)); ++i) {
    const TensorView& p = t.at("prompt." + std::to_string(i));
    EXPECT_EQ(p.dtype, DType::I64);
    const std::vector<int32_t> ids = ints(p);
    r.prompts.push_back(ids);
    r.logits.push_back(floats(t.at("logits." + std::to_string(i))));
    r.logits_f32.push_back(floats(t.at("logits_f32." + std::to_string(i))));
  }
  return r;
}

using test::rel_error;

int argmax_mismatches(const std::vector<float>& ours, const std::vector<float>& ref, int64_t V) {
  int bad = 0;
  for (size_t row = 0; row < ref.size() / V; ++row) {
    auto a = std::max_element(ours.begin() + row * V, ours.begin() + (row + 1) * V) - ours.begin();
    auto b = std::max_element(ref.begin() + row * V, ref.begin() + (row + 1) * V) - ref.begin();
    bad += a != b;
  }
  return bad;
}

class ModelFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelFixture, LogitsMatchTransformers) {
  const std::string name = GetParam();
  auto backend = make_cpu_backend();
  auto model = load_model(kFixtures / "models" / name, *backend);
  const Reference ref = load_reference(name);
  ASSERT_EQ(ref.prompts.size(), 4u);
  const bool f32 = model->config().torch_dtype == DType::F32;
  // Several block sizes: the paged cache must not change the answer.
  for (int block_size : {1, 16, 256}) {
    const PromptLogits out = prompt_logits(*model, *backend, ref.prompts, block_size);
    ASSERT_EQ(out.logits.size(), ref.prompts.size());
    for (size_t i = 0; i < ref.prompts.size(); ++i) {
      SCOPED_TRACE("prompt " + std::to_string(i) + " (" + std::to_string(ref.prompts[i].size()) +
                   " tokens), block size " + std::to_string(block_size));
      ASSERT_EQ(out.logits[i].size(), ref.logits[i].size());
      // What we compute: float32 arithmetic on the checkpoint's weights. transformers doing
      // the same must agree to float32 rounding, at every position.
      EXPECT_LT(rel_error(out.logits[i], ref.logits_f32[i]), 1e-4) << "against transformers in float32";
      EXPECT_EQ(argmax_mismatches(out.logits[i], ref.logits_f32[i], out.vocab_size), 0);
      if (f32) continue;
      // Against transformers computing in the model's own 16-bit dtype. Its rounding moves its
      // logits away from the float32 answer by its own error; we must be no further from it
      // than transformers' own float32 forward is (plus float32 noise), and within 2e-2.
      const double ours_vs_native = rel_error(out.logits[i], ref.logits[i]);
      const double hf32_vs_native = rel_error(ref.logits_f32[i], ref.logits[i]);
      EXPECT_LT(ours_vs_native, 2e-2) << "against transformers in its dtype";
      EXPECT_LT(ours_vs_native, hf32_vs_native + 1e-4) << "transformers' own f32-vs-native error " << hf32_vs_native;
      const int64_t rows = static_cast<int64_t>(ref.prompts[i].size());
      const int ours_flips = argmax_mismatches(out.logits[i], ref.logits[i], out.vocab_size);
      EXPECT_EQ(ours_flips, argmax_mismatches(ref.logits_f32[i], ref.logits[i], out.vocab_size))
          << "argmax flips against the 16-bit forward must be exactly transformers' own near-ties";
      EXPECT_LE(ours_flips * 10, rows) << "more than 10% of positions flipped";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, ModelFixture,
                         ::testing::Values("qwen3-tied-f32-g2-d64", "qwen3-untied-f32-g1-d128-sharded",
                                           "qwen3-tied-bf16-g4-d64", "qwen3-untied-bf16-g2-d128-sharded",
                                           "qwen3-untied-f16-g2-d64", "qwen3-untied-f32-g4-d64-bin",
                                           "qwen3-tied-bf16-g1-d128-bin-sharded",
                                           "qwen3-tied-f32-g2-d64-bias", "llama-untied-f32-g2-d64-rope3",
                                           "llama-tied-bf16-g4-d64", "qwen2-tied-bf16-g2-d64",
                                           "mistral-untied-f32-g4-d64-swa", "mixtral-untied-f32-e4k2",
                                           "qwen3moe-untied-f32-e6k3"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

TEST(ModelFixture, BatchOfPromptsEqualsPromptsOneByOne) {
  auto backend = make_cpu_backend();
  auto model = load_model(kFixtures / "models" / "qwen3-tied-f32-g2-d64", *backend);
  const Reference ref = load_reference("qwen3-tied-f32-g2-d64");
  const PromptLogits batch = prompt_logits(*model, *backend, ref.prompts, 16);
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    const PromptLogits one = prompt_logits(*model, *backend, {ref.prompts[i]}, 16);
    EXPECT_LT(rel_error(one.logits[0], batch.logits[i]), 1e-6) << "prompt " << i;
  }
}

TEST(ModelFixture, BadPromptsAreClearErrors) {
  auto backend = make_cpu_backend();
  auto model = load_model(kFixtures / "models" / "qwen3-tied-f32-g2-d64", *backend);
  auto msg = [&](std::vector<std::vector<int32_t>> prompts) {
    try {
      prompt_logits(*model, *backend, prompts);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({{}}).find("prompt 0 is empty"), std::string::npos);
  EXPECT_NE(msg({{1, 2}, {5, 512}}).find("prompt 1 has token id 512 outside the vocabulary [0, 512)"),
            std::string::npos);
  EXPECT_NE(msg({{-1}}).find("token id -1"), std::string::npos);
  EXPECT_NE(msg({std::vector<int32_t>(513, 3)}).find("more than max_position_embeddings (512)"),
            std::string::npos);
}

}  // namespace
}  // namespace nanovllm
