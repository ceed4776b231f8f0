// LlamaForCausalLM: config.json's "llama3" rope scaling, Llama 3.1's rescaled frequencies
// against their definition, and a tiny random Llama on the CPU backend against a plain
// double-precision transformer written here from the architecture's description (no q/k norms,
// rotate-half rotary with the rescaled frequencies, grouped-query attention, SwiGLU, untied
// lm_head). The same reference checks Qwen2 (q/k/v biases, tied) and Mistral (its sliding
// window, honoured by capping sequences at it). The comparison with transformers itself runs
// where transformers is (the device: tests/fixtures/make_fixtures.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../test_util.h"
#include "forwarding_backend.h"
#include "engine/prompt_logits.h"
#include "layers/rotary.h"
#include "loader/model_config.h"
#include "models/model.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {
using ::testing::HasSubstr;

std::string llama_json(const std::string& rope_scaling) {
  return R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "intermediate_size": 48, "vocab_size": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "attention_bias": false, "mlp_bias": false,
    "rope_scaling": )" + rope_scaling + "}";
}
// Wavelengths 2 pi / theta^(-2i/8) = 6.3, 63, 628, 6283 against 64 / 1 and 64 / 4: the first
// kept, the second blended, the last two divided by the factor.
const char* kScaling =
    R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64})";

std::string parse_error(const std::string& text) {
  try {
    parse_model_config(text, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LlamaConfig, ReadsLlama3RopeScaling) {
  const ModelConfig c = parse_model_config(llama_json(kScaling), "config.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_original_max_positions, 64);
  EXPECT_FALSE(c.mlp_bias);
}

TEST(LlamaConfig, IncompleteOrInvalidLlama3ScalingIsNamed) {
  EXPECT_THAT(parse_error(llama_json(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0})")),
              HasSubstr("rope type 'llama3' but no 'original_max_position_embeddings'"));
  EXPECT_THAT(parse_error(llama_json(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                                         "high_freq_factor": 1.0, "original_max_position_embeddings": 64})")),
              HasSubstr("0 < low_freq_factor < high_freq_factor"));
  EXPECT_THAT(parse_error(llama_json(R"({"rope_type": "llama3", "factor": 0.5, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64})")),
              HasSubstr("factor must be at least 1"));
  EXPECT_THAT(parse_error(llama_json(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 6.5})")),
              HasSubstr("original_max_position_embeddings must be a positive integer"));
}

// Llama 3.1's rescaling (Meta's apply_scaling, transformers' _compute_llama3_parameters), in
// double: wavelengths above old / low divided by factor, below old / high kept, and between,
// (1 - s) f / factor + s f with s = (old / wavelength - low) / (high - low).
std::vector<double> llama3_inv_freq(int d, double theta, double factor, double low, double high, double old) {
  std::vector<double> f(d / 2);
  for (int i = 0; i < d / 2; ++i) {
    const double base = 1.0 / std::pow(theta, 2.0 * i / d);
    const double wavelen = 2 * M_PI / base;
    if (wavelen < old / high) f[i] = base;
    else if (wavelen > old / low) f[i] = base / factor;
    else {
      const double s = (old / wavelen - low) / (high - low);
      f[i] = (1 - s) * base / factor + s * base;
    }
  }
  return f;
}

TEST(LlamaRope, Llama31FrequenciesFollowTheirDefinition) {
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  c.rope_type = "llama3";
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 4;
  c.rope_original_max_positions = 8192;
  const std::vector<float> ours = rope_inv_freq(c);
  const std::vector<double> ref = llama3_inv_freq(128, 500000.0, 8, 1, 4, 8192);
  ASSERT_EQ(ours.size(), ref.size());
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(ours[i], ref[i], 2e-6 * ref[i]) << "frequency " << i;
    const double base = 1.0 / std::pow(500000.0, 2.0 * double(i) / 128);
    const double wavelen = 2 * M_PI / base;
    kept += wavelen < 2048;
    divided += wavelen > 8192;
    blended += wavelen >= 2048 && wavelen <= 8192;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  // Without scaling the frequencies are theta^(-2i/d) (Qwen3's, unchanged).
  c.rope_type = "default";
  const std::vector<float> plain = rope_inv_freq(c);
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_NEAR(plain[i], 1.0 / std::pow(500000.0, 2.0 * double(i) / 128), 1e-6 * plain[i]);
}

// ---- A tiny Llama against a plain transformer ----

using Mat = std::vector<double>;  // row-major

struct Weights {
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<int64_t>> shapes;
  Mat get(const std::string& name) const {
    const auto& v = values.at(name);
    return Mat(v.begin(), v.end());
  }
};

// x (T, K) times w (N, K)^T.
Mat matmul_t(const Mat& x, const Mat& w, int T, int K, int N) {
  Mat out(size_t(T) * N, 0.0);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += x[size_t(t) * K + k] * w[size_t(n) * K + k];
      out[size_t(t) * N + n] = s;
    }
  return out;
}

Mat rms_norm(const Mat& x, const Mat& w, int T, int H, double eps) {
  Mat out(x.size());
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int h = 0; h < H; ++h) ss += x[size_t(t) * H + h] * x[size_t(t) * H + h];
    const double inv = 1.0 / std::sqrt(ss / H + eps);
    for (int h = 0; h < H; ++h) out[size_t(t) * H + h] = x[size_t(t) * H + h] * inv * w[h];
  }
  return out;
}

// Rotate-half rotary on each head of x (T, heads d), position t for row t.
void rotate(Mat& x, int T, int heads, int d, const std::vector<double>& inv_freq) {
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) {
      double* r = x.data() + (size_t(t) * heads + h) * d;
      for (int i = 0; i < d / 2; ++i) {
        const double a = t * inv_freq[i], c = std::cos(a), s = std::sin(a);
        const double x0 = r[i], x1 = r[i + d / 2];
        r[i] = x0 * c - x1 * s;
        r[i + d / 2] = x1 * c + x0 * s;
      }
    }
}

// Logits (T, V) of one prompt.
Mat reference_logits(const ModelConfig& c, const Weights& w, const std::vector<int32_t>& ids) {
  const int T = int(ids.size()), H = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int d = c.head_dim, I = c.intermediate_size, V = c.vocab_size;
  std::vector<double> inv_freq(d / 2);
  if (c.rope_type == "llama3")
    inv_freq = llama3_inv_freq(d, c.rope_theta, c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor,
                               c.rope_original_max_positions);
  else
    for (int i = 0; i < d / 2; ++i) inv_freq[i] = 1.0 / std::pow(c.rope_theta, 2.0 * i / d);
  // y += bias, for each row, when the checkpoint has one.
  auto add_bias = [&](Mat& y, const std::string& name, int N) {
    if (!w.values.count(name)) return;
    const Mat b = w.get(name);
    for (size_t r = 0; r < y.size() / N; ++r)
      for (int n = 0; n < N; ++n) y[r * N + n] += b[n];
  };
  const Mat embed = w.get("model.embed_tokens.weight");
  Mat x(size_t(T) * H);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) x[size_t(t) * H + h] = embed[size_t(ids[t]) * H + h];
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    const Mat h1 = rms_norm(x, w.get(p + ".input_layernorm.weight"), T, H, c.rms_norm_eps);
    Mat q = matmul_t(h1, w.get(p + ".self_attn.q_proj.weight"), T, H, nh * d);
    Mat k = matmul_t(h1, w.get(p + ".self_attn.k_proj.weight"), T, H, nkv * d);
    Mat v = matmul_t(h1, w.get(p + ".self_attn.v_proj.weight"), T, H, nkv * d);
    add_bias(q, p + ".self_attn.q_proj.bias", nh * d);
    add_bias(k, p + ".self_attn.k_proj.bias", nkv * d);
    add_bias(v, p + ".self_attn.v_proj.bias", nkv * d);
    // Qwen3-style per-head norms, when the checkpoint has them.
    if (w.values.count(p + ".self_attn.q_norm.weight")) {
      q = rms_norm(q, w.get(p + ".self_attn.q_norm.weight"), T * nh, d, c.rms_norm_eps);
      k = rms_norm(k, w.get(p + ".self_attn.k_norm.weight"), T * nkv, d, c.rms_norm_eps);
    }
    rotate(q, T, nh, d, inv_freq);
    rotate(k, T, nkv, d, inv_freq);
    Mat attn(size_t(T) * nh * d, 0.0);
    for (int t = 0; t < T; ++t)
      for (int hq = 0; hq < nh; ++hq) {
        const int hk = hq / (nh / nkv);
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (int u = 0; u <= t; ++u) {
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += q[(size_t(t) * nh + hq) * d + e] * k[(size_t(u) * nkv + hk) * d + e];
          s[u] = dot / std::sqrt(double(d));
          mx = std::max(mx, s[u]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int u = 0; u <= t; ++u)
          for (int e = 0; e < d; ++e) attn[(size_t(t) * nh + hq) * d + e] += s[u] / z * v[(size_t(u) * nkv + hk) * d + e];
      }
    Mat o = matmul_t(attn, w.get(p + ".self_attn.o_proj.weight"), T, nh * d, H);
    add_bias(o, p + ".self_attn.o_proj.bias", H);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    const Mat h2 = rms_norm(x, w.get(p + ".post_attention_layernorm.weight"), T, H, c.rms_norm_eps);
    // A SwiGLU MLP of `width` on rows h (n, H).
    auto swiglu = [&](const Mat& h, int n, const std::string& gate_w, const std::string& up_w,
                      const std::string& down_w, int width) {
      const Mat gate = matmul_t(h, w.get(gate_w), n, H, width);
      const Mat up = matmul_t(h, w.get(up_w), n, H, width);
      Mat act(gate.size());
      for (size_t i = 0; i < act.size(); ++i) act[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      return matmul_t(act, w.get(down_w), n, width, H);
    };
    // A mixture of experts (Mixtral's or Qwen3-MoE's names), else the dense MLP.
    std::string moe;
    for (const char* block : {".block_sparse_moe", ".mlp"})
      if (w.values.count(p + block + ".gate.weight")) moe = p + block;
    if (moe.empty()) {
      const Mat down = swiglu(h2, T, p + ".mlp.gate_proj.weight", p + ".mlp.up_proj.weight",
                              p + ".mlp.down_proj.weight", I);
      for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
      continue;
    }
    const bool mixtral = moe.ends_with("block_sparse_moe");
    const int E = c.num_experts, K = c.experts_per_token;
    const Mat logits = matmul_t(h2, w.get(moe + ".gate.weight"), T, H, E);
    for (int t = 0; t < T; ++t) {
      std::vector<double> prob(E);
      double mx = -1e300, z = 0;
      for (int e = 0; e < E; ++e) mx = std::max(mx, logits[size_t(t) * E + e]);
      for (int e = 0; e < E; ++e) z += (prob[e] = std::exp(logits[size_t(t) * E + e] - mx));
      std::vector<int> order(E);
      for (int e = 0; e < E; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
      double kept = 0;
      for (int j = 0; j < K; ++j) kept += prob[order[j]];
      const Mat row(h2.begin() + size_t(t) * H, h2.begin() + size_t(t + 1) * H);
      for (int j = 0; j < K; ++j) {
        const int e = order[j];
        const double weight = mixtral || c.norm_topk_prob ? prob[e] / kept : prob[e] / z;
        const std::string x_ = moe + ".experts." + std::to_string(e) + ".";
        const Mat y = mixtral ? swiglu(row, 1, x_ + "w1.weight", x_ + "w3.weight", x_ + "w2.weight",
                                       c.moe_intermediate_size)
                              : swiglu(row, 1, x_ + "gate_proj.weight", x_ + "up_proj.weight",
                                       x_ + "down_proj.weight", c.moe_intermediate_size);
        for (int h = 0; h < H; ++h) x[size_t(t) * H + h] += weight * y[h];
      }
    }
  }
  const Mat hf = rms_norm(x, w.get("model.norm.weight"), T, H, c.rms_norm_eps);
  return matmul_t(hf, w.values.count("lm_head.weight") ? w.get("lm_head.weight") : embed, T, H, V);  // tied
}

// The model create_model builds for `c`, with random weights for every parameter it asks for
// (norms near 1, the rest ~0.2), on the CPU backend against reference_logits; the names of the
// parameters it asked for.
std::vector<std::string> check_against_reference(const ModelConfig& c) {
  auto backend = make_cpu_backend();
  auto model = create_model(c, *backend);
  // Random weights for every parameter the model asks for: norms near 1, matrices ~0.2.
  std::mt19937 gen(1234);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Weights w;
  TensorMap tensors;
  model->params().for_each([&](const std::string& name, Tensor&, const std::vector<int64_t>& shape, int64_t) {
    if (w.values.count(name)) return;
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v(static_cast<size_t>(n));
    const bool norm = name.find("norm") != std::string::npos;
    for (float& e : v) e = norm ? 1.f + 0.2f * u(gen) : 0.35f * u(gen);
    w.values[name] = std::move(v);
    w.shapes[name] = shape;
  });
  for (auto& [name, v] : w.values) {
    TensorView t;
    t.dtype = DType::F32;
    t.shape = w.shapes[name];
    t.data = reinterpret_cast<const std::byte*>(v.data());
    t.nbytes = v.size() * sizeof(float);
    t.source = "test";
    tensors.emplace(name, t);
  }
  model->params().load(tensors, *backend, "random test weights");

  const std::vector<std::vector<int32_t>> prompts = {{1, 17, 5, 63, 2, 40, 40, 9, 31, 0, 12, 55, 7},
                                                     {3, 3, 60}};
  const PromptLogits got = prompt_logits(*model, *backend, prompts);
  EXPECT_EQ(got.logits.size(), prompts.size());
  for (size_t i = 0; i < prompts.size() && i < got.logits.size(); ++i) {
    const Mat ref = reference_logits(c, w, prompts[i]);
    const std::vector<float> ref_f(ref.begin(), ref.end());
    EXPECT_EQ(got.logits[i].size(), ref_f.size());
    if (got.logits[i].size() == ref_f.size()) {
      EXPECT_LT(test::rel_error(got.logits[i], ref_f), 1e-5) << c.architecture << " prompt " << i;
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, v] : w.values) names.push_back(name);
  return names;
}

TEST(LlamaModel, MatchesAPlainTransformer) {
  const auto names = check_against_reference(parse_model_config(llama_json(kScaling), "config.json"));
  EXPECT_THAT(names, ::testing::Contains("lm_head.weight"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.self_attn.q_norm.weight")))
      << "Llama has no q/k norms";
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.self_attn.q_proj.bias")));
}

// ---- Mixtral and Qwen3-MoE: mixtures of experts in the same decoder ----

std::string mixtral_json() {
  return R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "intermediate_size": 24, "vocab_size": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0, "tie_word_embeddings": false, "sliding_window": null,
    "num_local_experts": 4, "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02})";
}

// Layer 1 dense (mlp_only_layers), experts narrower than the dense MLP, no renormalisation.
std::string qwen3_moe_json(const std::string& extra = "") {
  return R"({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 32,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "intermediate_size": 40, "moe_intermediate_size": 16, "vocab_size": 64,
    "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": false, "use_sliding_window": false, "num_experts": 6,
    "num_experts_per_tok": 3, "norm_topk_prob": false, "decoder_sparse_step": 1,
    "mlp_only_layers": [1])" + extra + "}";
}

TEST(MixtralModel, MatchesAPlainTransformer) {
  const ModelConfig c = parse_model_config(mixtral_json(), "config.json");
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.experts_per_token, 2);
  EXPECT_EQ(c.moe_intermediate_size, 24) << "Mixtral's experts are intermediate_size wide";
  EXPECT_TRUE(c.norm_topk_prob) << "Mixtral always renormalises (its config has no field for it)";
  const auto names = check_against_reference(c);
  EXPECT_THAT(names, ::testing::Contains("model.layers.1.block_sparse_moe.gate.weight"));
  EXPECT_THAT(names, ::testing::Contains("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.mlp.gate_proj.weight")));
}

TEST(Qwen3MoeModel, MatchesAPlainTransformerWithADenseLayer) {
  const ModelConfig c = parse_model_config(qwen3_moe_json(), "config.json");
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_TRUE(is_moe_layer(c, 0));
  EXPECT_FALSE(is_moe_layer(c, 1));
  EXPECT_TRUE(is_moe_layer(c, 2));
  const auto names = check_against_reference(c);
  EXPECT_THAT(names, ::testing::Contains("model.layers.0.mlp.experts.5.up_proj.weight"));
  EXPECT_THAT(names, ::testing::Contains("model.layers.1.mlp.gate_proj.weight")) << "layer 1 is dense";
  EXPECT_THAT(names, ::testing::Contains("model.layers.2.self_attn.q_norm.weight"));
  // Renormalised routing is another model: the reference follows norm_topk_prob too.
  check_against_reference(parse_model_config(qwen3_moe_json(R"(, "norm_topk_prob": true)"), "config.json"));
}

TEST(MoeConfig, ProblemsAreNamed) {
  auto without = [](const std::string& text, const std::string& field) {
    std::string t = text;
    const size_t at = t.find("\"" + field + "\"");
    const size_t end = t.find_first_of(",}", t.find(':', at));
    return t.erase(at, end - at + (t[end] == ',' ? 1 : 0));
  };
  EXPECT_THAT(parse_error(without(mixtral_json(), "num_experts_per_tok")), HasSubstr("num_experts_per_tok"));
  EXPECT_THAT(parse_error(qwen3_moe_json(R"(, "num_experts_per_tok": 7)")), HasSubstr("exceeds the number of experts"));
  EXPECT_THAT(parse_error(qwen3_moe_json(R"(, "mlp_only_layers": [3])")), HasSubstr("mlp_only_layers"));
  EXPECT_THAT(parse_error(qwen3_moe_json(R"(, "shared_expert_intermediate_size": 64)")),
              HasSubstr("shared experts are not supported"));
}

// A backend that cannot run a model's experts says so when the model is built, naming the
// limit (the CUDA kernels' limits: at most 1,024 experts, 32 per token, sizes multiple of 8).
TEST(MoeConfig, BackendLimitsAreCheckedWhenTheModelIsBuilt) {
  struct Limited : test::ForwardingBackend {
    bool moe = true;
    std::string moe_unsupported(int E, int k, int64_t H, int64_t I) const override {
      if (!moe) return Backend::moe_unsupported(E, k, H, I);  // the default: no kernels
      return E > 2 ? "at most 2 experts here, got " + std::to_string(E) : "";
    }
  };
  const ModelConfig c = parse_model_config(mixtral_json(), "config.json");  // 4 experts
  Limited b;
  // The error building the model gives ("" and a failure if it builds).
  const auto build_error = [&]() -> std::string {
    try {
      create_model(c, b);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "built";
    return "";
  };
  const std::string limited = build_error();
  EXPECT_THAT(limited, HasSubstr("MixtralForCausalLM's mixture-of-experts layers cannot run on forwarding to cpu"));
  EXPECT_THAT(limited, HasSubstr(": at most 2 experts here, got 4"));
  b.moe = false;
  const std::string none = build_error();
  EXPECT_THAT(none, HasSubstr("mixture-of-experts layers cannot run on forwarding to cpu"));
  EXPECT_THAT(none, HasSubstr(": it has no mixture-of-experts kernels"));
  // The CPU backend runs any shape the config allows.
  auto cpu = make_cpu_backend();
  EXPECT_EQ(cpu->moe_unsupported(4, 2, 60, 24), "");
  EXPECT_NE(create_model(c, *cpu), nullptr);
}

// ---- Qwen2 and Mistral: the same decoder with other options ----

// Qwen2.5-style config.json: no attention_bias field (Qwen2 always has q/k/v biases), a
// sliding_window that use_sliding_window: false leaves inert.
std::string qwen2_json(const std::string& use_sliding_window) {
  return R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 48, "vocab_size": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "tie_word_embeddings": true, "sliding_window": 32,
    "max_window_layers": 2, "use_sliding_window": )" + use_sliding_window + "}";
}

// Mistral 7B v0.1-style: no biases, a sliding window that applies (no use_sliding_window field).
std::string mistral_json(const std::string& sliding_window) {
  return R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
    "intermediate_size": 48, "vocab_size": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "sliding_window": )" + sliding_window + "}";
}

TEST(Qwen2Model, MatchesAPlainTransformerWithQkvBiases) {
  const ModelConfig c = parse_model_config(qwen2_json("false"), "config.json");
  EXPECT_EQ(c.sliding_window, 0) << "use_sliding_window: false leaves the window inert";
  EXPECT_EQ(usable_positions(c), 128);
  const auto names = check_against_reference(c);
  for (const char* b : {"q_proj", "k_proj", "v_proj"})
    EXPECT_THAT(names, ::testing::Contains(std::string("model.layers.1.self_attn.") + b + ".bias"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.1.self_attn.o_proj.bias")));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("lm_head.weight"))) << "tied";
}

TEST(Qwen2Model, SlidingWindowLayersAreRefusedByName) {
  EXPECT_THAT(parse_error(qwen2_json("true")), HasSubstr("use_sliding_window"));
  EXPECT_THAT(parse_error(qwen2_json("\"yes\"")), HasSubstr("use_sliding_window"));
}

TEST(MistralModel, MatchesAPlainTransformerWithinItsWindow) {
  const ModelConfig c = parse_model_config(mistral_json("16"), "config.json");
  EXPECT_EQ(c.sliding_window, 16);
  EXPECT_EQ(usable_positions(c), 16) << "sequences are capped at the window";
  const auto names = check_against_reference(c);  // prompts of 13 and 3 tokens: inside the window
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.self_attn.q_proj.bias")));
}

TEST(MistralModel, WindowIsValidatedAndCapsPrompts) {
  EXPECT_EQ(parse_model_config(mistral_json("null"), "config.json").sliding_window, 0) << "v0.2+: none";
  EXPECT_EQ(usable_positions(parse_model_config(mistral_json("4096"), "config.json")), 128)
      << "a window past max_position_embeddings changes nothing";
  EXPECT_THAT(parse_error(mistral_json("0")), HasSubstr("sliding_window"));
  EXPECT_THAT(parse_error(mistral_json("\"4096\"")), HasSubstr("sliding_window"));
  const ModelConfig c = parse_model_config(mistral_json("4"), "config.json");
  auto backend = make_cpu_backend();
  auto model = create_model(c, *backend);
  try {
    prompt_logits(*model, *backend, {{1, 2, 3, 4, 5}});
    ADD_FAILURE() << "a 5-token prompt ran past a 4-token window";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("more than the sliding window (4)"));
  }
}

}  // namespace
}  // namespace nanovllm
