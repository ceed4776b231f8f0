#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "loader/model_config.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

const char* kValid = R"({
  "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "intermediate_size": 160, "vocab_size": 512,
  "max_position_embeddings": 512, "eos_token_id": 2, "bos_token_id": 1
})";

std::string error_of(const std::string& text) {
  try {
    parse_model_config(text, "/m/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Replaces `"key": <old value>` in kValid.
std::string with(const std::string& key, const std::string& value) {
  std::string s = kValid;
  const auto pos = s.find("\"" + key + "\"");
  if (pos == std::string::npos) return s.substr(0, s.rfind('}')) + ", \"" + key + "\": " + value + "}";
  const auto colon = s.find(':', pos);
  const auto end = s.find_first_of(",}", colon);
  return s.substr(0, colon + 1) + " " + value + s.substr(end);
}
std::string without(const std::string& key) {
  std::string s = kValid;
  const auto pos = s.find("\"" + key + "\"");
  const auto end = s.find_first_of(",}", pos);
  return s.substr(0, pos) + s.substr(end + (s[end] == ',' ? 1 : 0));
}

TEST(ModelConfig, ParsesRequiredFieldsAndDefaults) {
  const ModelConfig c = parse_model_config(kValid, "/m/config.json");
  EXPECT_EQ(c.architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.head_dim, 16);  // hidden_size / num_attention_heads
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.torch_dtype, DType::F32);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.bos_token_id, 1);
}

TEST(ModelConfig, ReadsOptionalFieldsInBothTransformersStyles) {
  ModelConfig c = parse_model_config(
      with("head_dim", "128").substr(0, with("head_dim", "128").rfind('}')) +
          R"(, "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "tie_word_embeddings": true,
              "rms_norm_eps": 1e-5, "eos_token_id": [2, 7]})",
      "/m/config.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.torch_dtype, DType::BF16);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 7}));
  // transformers 5: "dtype" and rope_parameters.
  c = parse_model_config(with("dtype", "\"float16\"").substr(0, with("dtype", "\"float16\"").rfind('}')) +
                             R"(, "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}})",
                         "/m/config.json");
  EXPECT_EQ(c.torch_dtype, DType::F16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5000.0);
}

TEST(ModelConfig, EachRequiredFieldIsNamedWhenMissing) {
  for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "intermediate_size", "vocab_size",
                            "max_position_embeddings"}) {
    const std::string msg = error_of(without(field));
    EXPECT_THAT(msg, HasSubstr("/m/config.json")) << field;
    EXPECT_THAT(msg, HasSubstr(std::string("field '") + field + "' is required but missing"));
  }
}

TEST(ModelConfig, InvalidValuesNameTheFieldAndTheFile) {
  EXPECT_THAT(error_of(with("hidden_size", "0")), HasSubstr("field 'hidden_size' must be positive, got 0"));
  EXPECT_THAT(error_of(with("vocab_size", "-3")), HasSubstr("field 'vocab_size' must be positive, got -3"));
  EXPECT_THAT(error_of(with("num_hidden_layers", "\"two\"")),
              HasSubstr("field 'num_hidden_layers' must be an integer, got \"two\""));
  EXPECT_THAT(error_of(with("intermediate_size", "1.5")), HasSubstr("field 'intermediate_size' must be an integer"));
  EXPECT_THAT(error_of(with("num_key_value_heads", "3")),
              HasSubstr("field 'num_key_value_heads' (3) must divide num_attention_heads (4)"));
  EXPECT_THAT(error_of(with("hidden_size", "66")), HasSubstr("field 'head_dim' is missing and hidden_size (66)"));
  EXPECT_THAT(error_of(with("torch_dtype", "\"float8\"")),
              HasSubstr("field 'torch_dtype' names an unknown dtype 'float8'"));
  EXPECT_THAT(error_of(with("tie_word_embeddings", "\"yes\"")),
              HasSubstr("field 'tie_word_embeddings' must be true or false"));
  EXPECT_THAT(error_of(with("rope_scaling", R"({"rope_type": "yarn", "factor": 4.0})")),
              HasSubstr("rope type 'yarn', which nanovllm does not support yet"));
  EXPECT_THAT(error_of(with("hidden_act", "\"gelu\"")), HasSubstr("field 'hidden_act' is 'gelu'"));
  EXPECT_THAT(error_of(with("use_sliding_window", "true")), HasSubstr("sliding-window attention"));
  EXPECT_THAT(error_of(with("architectures", "[]")), HasSubstr("field 'architectures'"));
  EXPECT_THAT(error_of(with("head_dim", "15")), HasSubstr("field 'head_dim' must be even"));
}

TEST(ModelConfig, BrokenJsonIsAClearError) {
  EXPECT_THAT(error_of("{\"hidden_size\": 64,"), HasSubstr("/m/config.json: not valid JSON"));
  EXPECT_THAT(error_of("[1, 2]"), HasSubstr("expected a JSON object"));
  EXPECT_THAT(error_of(""), HasSubstr("not valid JSON"));
}

TEST(ModelConfig, MissingFolderAndFileAreNamed) {
  const auto dir = std::filesystem::temp_directory_path() / "nanovllm_cfg_test";
  std::filesystem::remove_all(dir);
  try {
    load_model_config(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a model folder"));
  }
  std::filesystem::create_directories(dir);
  try {
    load_model_config(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("config.json: missing"));
  }
  std::filesystem::remove_all(dir);
}

TEST(GenerationConfig, ReadsEosAndSamplingDefaults) {
  const GenerationConfig g = parse_generation_config(
      R"({"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": true, "temperature": 0.6,
          "top_p": 0.95, "top_k": 20, "max_new_tokens": 64})",
      "/m/generation_config.json");
  EXPECT_TRUE(g.present);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{2, 3}));
  EXPECT_EQ(g.bos_token_id, 1);
  EXPECT_EQ(g.do_sample, true);
  EXPECT_DOUBLE_EQ(*g.temperature, 0.6);
  EXPECT_DOUBLE_EQ(*g.top_p, 0.95);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_EQ(g.max_new_tokens, 64);
  try {
    parse_generation_config(R"({"eos_token_id": "x"})", "/m/generation_config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("field 'eos_token_id' must be a token id"));
  }
}

TEST(GenerationConfig, AbsentFileIsNotAnError) {
  EXPECT_FALSE(load_generation_config(std::filesystem::temp_directory_path()).present);
  const GenerationConfig g = load_generation_config(std::filesystem::path(NANOVLLM_FIXTURES_DIR) /
                                                    "models" / "qwen3-tied-f32-g2-d64");
  EXPECT_TRUE(g.present);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{2, 3}));
}

}  // namespace
}  // namespace nanovllm
