// load_format "dummy" and the model presets: presets parse as the published configs, random
// weights are deterministic and keep activations finite, and the engine runs on them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bench/model_presets.h"
#include "engine/llm_engine.h"
#include "engine/prompt_logits.h"
#include "loader/dummy_weights.h"
#include "nanovllm/llm.h"
#include "runtime/error.h"
#include "forwarding_backend.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

const std::filesystem::path kFixtures = NANOVLLM_FIXTURES_DIR;
const std::string kTiny = (kFixtures / "models" / "qwen3-tied-f32-g2-d64").string();
const std::string kUntied = (kFixtures / "models" / "qwen3-untied-f32-g1-d128-sharded").string();

struct Published {
  const char* name;
  int hidden, intermediate, layers, heads;
  bool tied;
};

TEST(ModelPresets, Qwen3ConfigsAreThePublishedOnes) {
  const Published want[] = {{"qwen3-0.6b", 1024, 3072, 28, 16, true},
                            {"qwen3-1.7b", 2048, 6144, 28, 16, true},
                            {"qwen3-4b", 2560, 9728, 36, 32, true},
                            {"qwen3-8b", 4096, 12288, 36, 32, false},
                            {"qwen3-14b", 5120, 17408, 40, 40, false}};
  for (const auto& w : want) {
    SCOPED_TRACE(w.name);
    const auto* p = bench::find_model_preset(w.name);
    ASSERT_NE(p, nullptr);
    const ModelConfig c = bench::preset_model_config(*p);
    EXPECT_EQ(c.architecture, "Qwen3ForCausalLM");
    EXPECT_EQ(c.hidden_size, w.hidden);
    EXPECT_EQ(c.intermediate_size, w.intermediate);
    EXPECT_EQ(c.num_hidden_layers, w.layers);
    EXPECT_EQ(c.num_attention_heads, w.heads);
    EXPECT_EQ(c.num_key_value_heads, 8);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.vocab_size, 151936);
    EXPECT_EQ(c.max_position_embeddings, 40960);
    EXPECT_EQ(c.rope_theta, 1e6);
    EXPECT_EQ(c.rms_norm_eps, 1e-6);
    EXPECT_EQ(c.tie_word_embeddings, w.tied);
    EXPECT_EQ(c.torch_dtype, DType::BF16);
    EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
  }
  // Hub ids and any case name the same preset.
  EXPECT_EQ(bench::find_model_preset("Qwen/Qwen3-8B"), bench::find_model_preset("qwen3-8b"));
  EXPECT_EQ(bench::find_model_preset("QWEN3-0.6B"), bench::find_model_preset("qwen3-0.6b"));
  EXPECT_EQ(bench::find_model_preset("qwen3-7b"), nullptr);
  EXPECT_EQ(bench::find_model_preset(kTiny), nullptr);
}

TEST(ModelPresets, Llama31ReadsItsRopeScaling) {
  const auto* p = bench::find_model_preset("llama-3.1-8b");
  ASSERT_NE(p, nullptr);
  const ModelConfig c = bench::preset_model_config(*p);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_original_max_positions, 8192);
}

TEST(ModelPresets, Qwen25AndMistralAreThePublishedOnes) {
  const ModelConfig q = bench::preset_model_config(*bench::find_model_preset("Qwen/Qwen2.5-7B"));
  EXPECT_EQ(q.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(q.hidden_size, 3584);
  EXPECT_EQ(q.num_attention_heads, 28);
  EXPECT_EQ(q.num_key_value_heads, 4);
  EXPECT_EQ(q.head_dim, 128);  // hidden / heads
  EXPECT_EQ(q.vocab_size, 152064);
  EXPECT_EQ(q.sliding_window, 0) << "use_sliding_window: false";
  EXPECT_EQ(usable_positions(q), 131072);
  const ModelConfig m = bench::preset_model_config(*bench::find_model_preset("mistral-7b"));
  EXPECT_EQ(m.architecture, "MistralForCausalLM");
  EXPECT_EQ(m.hidden_size, 4096);
  EXPECT_EQ(m.intermediate_size, 14336);
  EXPECT_EQ(m.num_key_value_heads, 8);
  EXPECT_EQ(m.vocab_size, 32768);
  EXPECT_EQ(m.sliding_window, 0) << "v0.3: none";
  EXPECT_EQ(m.eos_token_ids, std::vector<int>{2});
}

TEST(ModelPresets, MixturesOfExperts) {
  const ModelConfig q = bench::preset_model_config(*bench::find_model_preset("Qwen/Qwen3-30B-A3B"));
  EXPECT_EQ(q.architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(q.num_experts, 128);
  EXPECT_EQ(q.experts_per_token, 8);
  EXPECT_EQ(q.moe_intermediate_size, 768);
  EXPECT_TRUE(q.norm_topk_prob);
  EXPECT_EQ(q.num_key_value_heads, 4);
  for (int l = 0; l < q.num_hidden_layers; ++l) EXPECT_TRUE(is_moe_layer(q, l)) << l;
  const ModelConfig m = bench::preset_model_config(*bench::find_model_preset("mixtral-8x7b"));
  EXPECT_EQ(m.architecture, "MixtralForCausalLM");
  EXPECT_EQ(m.num_experts, 8);
  EXPECT_EQ(m.experts_per_token, 2);
  EXPECT_EQ(m.moe_intermediate_size, 14336);
  EXPECT_TRUE(m.norm_topk_prob) << "Mixtral renormalises over its two experts";
  EXPECT_EQ(m.vocab_size, 32000);
}

TEST(DummyWeights, ConfigFromPresetOrFolder) {
  EXPECT_TRUE(is_model_preset("qwen3-0.6b"));
  EXPECT_FALSE(is_model_preset(kTiny));
  EXPECT_EQ(dummy_model_config("qwen3-1.7b").hidden_size, 2048);
  EXPECT_EQ(dummy_model_config(kTiny).hidden_size, 64);
  EXPECT_THROW(dummy_model_config("/no/such/model/folder"), Error);
}

std::vector<float> host_copy(Backend& b, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  b.copy_to_host(v.data(), t, t.nbytes());
  return v;
}

TEST(DummyWeights, DeterministicAndShaped) {
  auto backend = make_cpu_backend();
  auto a = load_dummy_model(kUntied, *backend);
  auto b = load_dummy_model(kUntied, *backend);
  auto c = load_dummy_model(kUntied, *backend, 42);
  int checked = 0;
  std::vector<std::vector<float>> va, vc;
  a->params().for_each([&](const std::string& name, Tensor& t, const std::vector<int64_t>&, int64_t) {
    const auto v = host_copy(*backend, t);
    double sum = 0, sq = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x)) << name;
      sum += x, sq += double{x} * x;
    }
    const double n = static_cast<double>(v.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    if (name.ends_with("norm.weight")) {
      EXPECT_EQ(mean, 1.0) << name;
      EXPECT_EQ(sd, 0.0) << name;
    } else if (v.size() > 1000 && t.rank() == 2 && name.find("proj") == std::string::npos) {
      EXPECT_NEAR(mean, 0.0, 0.002) << name;
      EXPECT_NEAR(sd, 0.02, 0.002) << name;
      ++checked;
    }
    va.push_back(v);
  });
  EXPECT_GT(checked, 0);
  size_t i = 0;
  b->params().for_each([&](const std::string& name, Tensor& t, const std::vector<int64_t>&, int64_t) {
    EXPECT_EQ(host_copy(*backend, t), va[i++]) << name << ": same seed, same weights";
  });
  bool differs = false;
  i = 0;
  c->params().for_each([&](const std::string& name, Tensor& t, const std::vector<int64_t>&, int64_t) {
    if (!name.ends_with("norm.weight") && host_copy(*backend, t) != va[i]) differs = true;
    ++i;
  });
  EXPECT_TRUE(differs) << "another seed, other weights";
}

TEST(DummyWeights, FiniteLogits) {
  auto backend = make_cpu_backend();
  for (const std::string& dir : {kTiny, kUntied}) {
    auto model = load_dummy_model(dir, *backend);
    const PromptLogits out = prompt_logits(*model, *backend, {{1, 2, 3, 4, 5, 6, 7, 8}});
    double sq = 0;
    for (float x : out.logits[0]) {
      ASSERT_TRUE(std::isfinite(x)) << dir;
      sq += double{x} * x;
    }
    EXPECT_GT(sq, 0) << dir << ": logits are not all zero";
  }
}

TEST(DummyWeights, EngineGenerates) {
  Config c;
  c.backend = "cpu";
  c.load_format = "dummy";
  c.kvcache_block_size = 16;
  c.num_kvcache_blocks = 64;
  LLM llm(kTiny, c);
  SamplingParams p;
  p.temperature = 0.6;
  p.ignore_eos = true;
  p.max_tokens = 12;
  p.logprobs = 3;
  p.seed = 1;
  const auto outs = llm.generate({std::vector<int32_t>{1, 2, 3}, std::vector<int32_t>{9, 8, 7, 6, 5}}, p);
  for (const auto& o : outs) {
    ASSERT_EQ(o.finish_reason, "length") << o.error;
    ASSERT_EQ(o.token_ids.size(), 12u);
    ASSERT_EQ(o.logprobs.size(), 12u);
    for (const auto& lp : o.logprobs) {
      EXPECT_TRUE(std::isfinite(lp.logprob));
      EXPECT_LE(lp.logprob, 0.f);
      for (const auto& [id, l] : lp.top) EXPECT_TRUE(std::isfinite(l));
    }
    for (int32_t t : o.token_ids) EXPECT_TRUE(t >= 0 && t < 512);
  }
  // Deterministic weights and a seed: a second engine gives the same tokens.
  LLM again(kTiny, c);
  EXPECT_EQ(again.generate({std::vector<int32_t>{1, 2, 3}}, p)[0].token_ids, outs[0].token_ids);
}

// Refuses every allocation: a model build that starts, fails at once, without memory.
class NoMemoryBackend final : public test::ForwardingBackend {
 public:
  Tensor empty(const std::vector<int64_t>&, DType) override { throw Error("NoMemoryBackend: no allocation"); }
};

TEST(DummyWeights, EngineTakesAPresetWithoutAFolder) {
  // A preset name (or its hub id) never resolves to a folder: the engine goes straight to
  // building the model, which this backend stops at its first allocation (8B of weights
  // would take minutes on the CPU).
  Config c;
  c.backend = "cpu";
  c.load_format = "dummy";
  c.model = "meta-llama/Llama-3.1-8B";
  try {
    LLMEngine engine(c, std::make_unique<NoMemoryBackend>());
    FAIL() << "the backend refuses every allocation";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("NoMemoryBackend"));
  }
  // Without load_format dummy a preset name is a model path like any other.
  c.load_format = "auto";
  EXPECT_THROW(LLM("qwen3-0.6b-no-such-folder", c), Error);
}

}  // namespace
}  // namespace nanovllm
