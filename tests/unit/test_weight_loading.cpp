// Checkpoint-to-model matching: every problem reported in one error, with names and shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "loader/checkpoint.h"
#include "models/model.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;
using ::testing::Not;

const std::filesystem::path kModels = std::filesystem::path(NANOVLLM_FIXTURES_DIR) / "models";

std::string load_error(const std::string& model, const std::function<void(TensorMap&)>& edit) {
  auto backend = make_cpu_backend();
  const ModelConfig c = load_model_config(kModels / model);
  auto m = create_model(c, *backend);
  Checkpoint ckpt = open_checkpoint(kModels / model);
  edit(ckpt.tensors);
  try {
    m->params().load(ckpt.tensors, *backend, "test checkpoint");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(WeightLoading, MissingUnexpectedAndMisshapedAreReportedTogether) {
  const std::string msg = load_error("qwen3-untied-f32-g1-d128-sharded", [](TensorMap& t) {
    t.erase("model.layers.1.mlp.up_proj.weight");
    t.erase("lm_head.weight");
    TensorView extra = t.at("model.norm.weight");
    t.emplace("model.layers.7.foo.weight", extra);
    TensorView& q = t.at("model.layers.0.self_attn.q_proj.weight");
    q.shape = {q.shape[1], q.shape[0]};  // transposed: same bytes, wrong shape
  });
  EXPECT_THAT(msg, HasSubstr("test checkpoint: the checkpoint does not match the model"));
  EXPECT_THAT(msg, HasSubstr("missing (2):"));
  EXPECT_THAT(msg, HasSubstr("model.layers.1.mlp.up_proj.weight [160, 64]"));
  EXPECT_THAT(msg, HasSubstr("lm_head.weight [512, 64]"));
  EXPECT_THAT(msg, HasSubstr("wrong shape (1):"));
  EXPECT_THAT(msg, HasSubstr("model.layers.0.self_attn.q_proj.weight: checkpoint has [64, 256], model expects [256, 64]"));
  EXPECT_THAT(msg, HasSubstr("unexpected (1):"));
  EXPECT_THAT(msg, HasSubstr("model.layers.7.foo.weight [64]"));
}

TEST(WeightLoading, TiedModelsAcceptAndIgnoreASavedLmHeadAndRotaryBuffers) {
  EXPECT_EQ(load_error("qwen3-tied-f32-g2-d64", [](TensorMap& t) {
              t.emplace("lm_head.weight", t.at("model.embed_tokens.weight"));
              t.emplace("model.layers.0.self_attn.rotary_emb.inv_freq", t.at("model.norm.weight"));
            }),
            "no error");
}

TEST(WeightLoading, IntegerTensorWhereAWeightBelongsIsRefused) {
  const std::string msg = load_error("qwen3-tied-f32-g2-d64", [](TensorMap& t) {
    t.at("model.norm.weight").dtype = DType::I32;
  });
  EXPECT_THAT(msg, HasSubstr("not a floating-point tensor (1):"));
  EXPECT_THAT(msg, HasSubstr("model.norm.weight: I32"));
}

TEST(WeightLoading, UnknownArchitectureNamesTheKnownOnes) {
  ModelConfig c = load_model_config(kModels / "qwen3-tied-f32-g2-d64");
  c.architecture = "GPTBigCodeForCausalLM";
  auto backend = make_cpu_backend();
  try {
    create_model(c, *backend);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("architecture 'GPTBigCodeForCausalLM' is not supported (known: "));
    EXPECT_THAT(e.what(), HasSubstr("Qwen3ForCausalLM"));
  }
}

TEST(WeightLoading, RegisteredArchitecturesArePluggable) {
  register_architecture("MyQwen3Variant", [](const ModelConfig& c, Backend& b) {
    ModelConfig q = c;
    q.architecture = "Qwen3ForCausalLM";
    return create_model(q, b);
  });
  ModelConfig c = load_model_config(kModels / "qwen3-tied-f32-g2-d64");
  c.architecture = "MyQwen3Variant";
  auto backend = make_cpu_backend();
  EXPECT_EQ(create_model(c, *backend)->config().vocab_size, 512);
}

TEST(WeightLoading, FolderWithoutWeightsIsNamed) {
  const auto dir = std::filesystem::temp_directory_path() / "nanovllm_noweights";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kModels / "qwen3-tied-f32-g2-d64" / "config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto backend = make_cpu_backend();
  try {
    load_model(dir, *backend);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no weights found"));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nanovllm
