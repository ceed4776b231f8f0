// The Llama-family decoder that Qwen3, Qwen2, Llama and Mistral share: pre-norm decoder layers
// of grouped-query attention (Qwen3: with RMSNorm on each query and key head before the rotary
// embedding; Qwen2: q/k/v biases) and a SwiGLU MLP; tied or untied lm_head. Checkpoint names
// follow Hugging Face's; q/k/v and gate/up are packed into one GEMM each.
#include "models/decoder_lm.h"

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/rotary.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

struct DecoderLayer {
  DecoderLayer(Backend& b, const ModelConfig& c, int layer, const std::string& p, const DecoderOptions& o)
      : input_norm(b, p + ".input_layernorm", c.hidden_size, static_cast<float>(c.rms_norm_eps)),
        qkv_proj(b, c.hidden_size,
                 {{p + ".self_attn.q_proj", int64_t{c.num_attention_heads} * c.head_dim},
                  {p + ".self_attn.k_proj", int64_t{c.num_key_value_heads} * c.head_dim},
                  {p + ".self_attn.v_proj", int64_t{c.num_key_value_heads} * c.head_dim}},
                 o.qkv_bias.value_or(c.attention_bias)),
        o_proj(b, int64_t{c.num_attention_heads} * c.head_dim, {{p + ".self_attn.o_proj", c.hidden_size}},
               o.o_bias.value_or(c.attention_bias)),
        post_attn_norm(b, p + ".post_attention_layernorm", c.hidden_size,
                       static_cast<float>(c.rms_norm_eps)),
        moe(is_moe_layer(c, layer)) {
    if (moe) {
      // All experts' gate and up rows in one (E * 2I, H) matrix, their down rows in one (E * H, I).
      const std::string m = p + "." + o.moe.block;
      const int64_t I = c.moe_intermediate_size;
      std::vector<std::pair<std::string, int64_t>> gu, dn;
      for (int e = 0; e < c.num_experts; ++e) {
        const std::string x = m + ".experts." + std::to_string(e) + ".";
        gu.insert(gu.end(), {{x + o.moe.gate, I}, {x + o.moe.up, I}});
        dn.push_back({x + o.moe.down, c.hidden_size});
      }
      router.emplace(b, c.hidden_size, std::vector<std::pair<std::string, int64_t>>{{m + "." + o.moe.router, c.num_experts}},
                     false);
      gate_up_proj.emplace(b, c.hidden_size, std::move(gu), false);
      down_proj.emplace(b, I, std::move(dn), false);
    } else {
      gate_up_proj.emplace(
          b, c.hidden_size,
          std::vector<std::pair<std::string, int64_t>>{{p + ".mlp.gate_proj", c.intermediate_size},
                                                       {p + ".mlp.up_proj", c.intermediate_size}},
          false);
      down_proj.emplace(b, c.intermediate_size,
                        std::vector<std::pair<std::string, int64_t>>{{p + ".mlp.down_proj", c.hidden_size}}, false);
    }
    if (o.qk_norm) {
      q_norm.emplace(b, p + ".self_attn.q_norm", c.head_dim, static_cast<float>(c.rms_norm_eps));
      k_norm.emplace(b, p + ".self_attn.k_norm", c.head_dim, static_cast<float>(c.rms_norm_eps));
    }
  }
  // The per-head norms' weights for qk_norm_rope: null without them (rotation only).
  const Tensor* q_weight() const { return q_norm ? &q_norm->weight() : nullptr; }
  const Tensor* k_weight() const { return k_norm ? &k_norm->weight() : nullptr; }
  float qk_eps() const { return q_norm ? q_norm->eps() : 0.f; }

  void register_params(ParamRegistry& reg) {
    input_norm.register_params(reg);
    qkv_proj.register_params(reg);
    if (q_norm) q_norm->register_params(reg);
    if (k_norm) k_norm->register_params(reg);
    o_proj.register_params(reg);
    post_attn_norm.register_params(reg);
    if (router) router->register_params(reg);
    gate_up_proj->register_params(reg);
    down_proj->register_params(reg);
  }

  RMSNorm input_norm;
  Linear qkv_proj;
  std::optional<RMSNorm> q_norm, k_norm;
  Linear o_proj;
  RMSNorm post_attn_norm;
  bool moe;  // a mixture-of-experts MLP: router, then every expert's rows packed in gate_up/down
  std::optional<Linear> router, gate_up_proj, down_proj;
};

class DecoderLM final : public CausalLM {
 public:
  DecoderLM(const ModelConfig& c, Backend& b, const DecoderOptions& o)
      : c_(c), b_(b),
        embed_(b.empty({c.vocab_size, c.hidden_size}, b.compute_dtype())),
        final_norm_(b, "model.norm", c.hidden_size, static_cast<float>(c.rms_norm_eps)),
        rotary_(b, c) {
    // The fused small-batch products (rms_norm_linear_silu, linear_add) take no MLP bias.
    if (c.mlp_bias) throw Error(c.path.string() + ": mlp_bias is true; MLP biases are not supported yet");
    for (int i = 0; i < c.num_hidden_layers; ++i) has_moe_ = has_moe_ || is_moe_layer(c, i);
    if (has_moe_) {
      const std::string why =
          b.moe_unsupported(c.num_experts, c.experts_per_token, c.hidden_size, c.moe_intermediate_size);
      if (!why.empty())
        throw Error(c.path.string() + ": " + (c.architecture.empty() ? c.model_type : c.architecture) +
                    "'s mixture-of-experts layers cannot run on " + b.name() + ": " + why);
    }
    for (int i = 0; i < c.num_hidden_layers; ++i)
      layers_.push_back(std::make_unique<DecoderLayer>(b, c, i, "model.layers." + std::to_string(i), o));
    reg_.add("model.embed_tokens.weight", &embed_, {c.vocab_size, c.hidden_size});
    for (auto& l : layers_) l->register_params(reg_);
    final_norm_.register_params(reg_);
    if (c.tie_word_embeddings) {
      reg_.allow_unused("lm_head.weight");  // some exporters save the tied copy anyway
    } else {
      lm_head_ = std::make_unique<Linear>(b, c.hidden_size,
                                          std::vector<std::pair<std::string, int64_t>>{{"lm_head", c.vocab_size}},
                                          false);
      lm_head_->register_params(reg_);
    }
    // Older exports save the rotary inverse frequencies as a buffer; we compute our own.
    reg_.allow_unused_if([](const std::string& n) { return n.ends_with(".rotary_emb.inv_freq"); });
  }

  const ModelConfig& config() const override { return c_; }
  ParamRegistry& params() override { return reg_; }
  int num_kv_heads() const override { return c_.num_key_value_heads; }
  int head_dim() const override { return c_.head_dim; }

  Tensor forward(const Tensor& ids, const AttentionMetadata& meta, KVCache& cache) override {
    const int64_t T = ids.numel(), H = c_.hidden_size;
    const int nh = c_.num_attention_heads, nkv = c_.num_key_value_heads, d = c_.head_dim;
    const DType dt = b_.compute_dtype();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    Tensor h = b_.empty({T, H}, dt), residual = b_.empty({T, H}, dt);
    Tensor qkv = b_.empty({T, static_cast<int64_t>(nh + 2 * nkv) * d}, dt);
    Tensor attn = b_.empty({T, static_cast<int64_t>(nh) * d}, dt);
    Tensor gate_up = b_.empty({T, 2 * int64_t{c_.intermediate_size}}, dt);
    Tensor act = b_.empty({T, int64_t{c_.intermediate_size}}, dt);
    Tensor moe_out = has_moe_ ? b_.empty({T, H}, dt) : Tensor();

    b_.embedding(ids, embed_, residual);
    auto tap = [&](const char* name, int layer, const Tensor& t) {
      if (tap_) tap_(name, layer, t);
    };
    // Small decode batches: the residual stream is updated by the products that feed it, and
    // each norm runs inside the product that reads it (Backend::fuses_norm_linear). Taps see
    // the unfused path only: the fused one never materialises the normed activations.
    const int64_t I = c_.intermediate_size, A = int64_t{nh} * d;
    if (!tap_ && !layers_.empty() && !has_moe_ && b_.fuses_norm_linear(T, H, {H, A, I})) {
      for (auto& layer : layers_) {
        DecoderLayer& L = *layer;
        const size_t i = static_cast<size_t>(&layer - layers_.data());
        b_.rms_norm_linear(residual, L.input_norm.weight(), L.input_norm.eps(), L.qkv_proj.weight(),
                           L.qkv_proj.bias(), qkv);
        b_.qk_norm_rope_store_kv(qkv, nh, nkv, d, L.q_weight(), L.k_weight(), L.qk_eps(), rotary_.cos_sin(),
                                 cache.k[i], cache.v[i], meta);
        b_.attention(qkv, nh, nkv, d, scale, cache.k[i], cache.v[i], meta, attn);
        b_.linear_add(attn, L.o_proj.weight(), L.o_proj.bias(), residual, h);
        b_.rms_norm_linear_silu(residual, L.post_attn_norm.weight(), L.post_attn_norm.eps(),
                                L.gate_up_proj->weight(), act, gate_up);
        b_.linear_add(act, L.down_proj->weight(), nullptr, residual, h);
      }
      final_norm_.forward(b_, residual, h);
      return h;
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      DecoderLayer& L = *layers_[i];
      const int li = static_cast<int>(i);
      if (i == 0) L.input_norm.forward(b_, residual, h);  // the residual stream starts as the embedding
      else L.input_norm.forward_residual(b_, h, residual);
      tap("residual_in", li, residual);
      tap("attn_norm", li, h);
      L.qkv_proj.forward(b_, h, qkv);
      tap("qkv", li, qkv);
      b_.qk_norm_rope_store_kv(qkv, nh, nkv, d, L.q_weight(), L.k_weight(), L.qk_eps(), rotary_.cos_sin(),
                               cache.k[i], cache.v[i], meta);
      tap("qkv_rope", li, qkv);
      b_.attention(qkv, nh, nkv, d, scale, cache.k[i], cache.v[i], meta, attn);
      tap("attn", li, attn);
      L.o_proj.forward(b_, attn, h);
      tap("o_proj", li, h);
      L.post_attn_norm.forward_residual(b_, h, residual);
      tap("residual_mid", li, residual);
      tap("mlp_norm", li, h);
      if (L.moe) {
        b_.moe_mlp(h, L.router->weight(), L.gate_up_proj->weight(), L.down_proj->weight(), c_.experts_per_token,
                   c_.norm_topk_prob, moe_out);
        std::swap(h, moe_out);  // h is the MLP's output, as on the dense path
        tap("down", li, h);
        continue;
      }
      L.gate_up_proj->forward(b_, h, gate_up);
      tap("gate_up", li, gate_up);
      b_.silu_and_mul(gate_up, act);
      tap("act", li, act);
      L.down_proj->forward(b_, act, h);
      tap("down", li, h);
    }
    if (layers_.empty()) final_norm_.forward(b_, residual, h);
    else final_norm_.forward_residual(b_, h, residual);
    tap("final_norm", -1, h);
    return h;
  }

  Tensor compute_logits(const Tensor& hidden) override {
    Tensor logits = b_.empty({hidden.dim(0), int64_t{c_.vocab_size}}, b_.compute_dtype());
    if (lm_head_) lm_head_->forward(b_, hidden, logits);
    else b_.linear(hidden, embed_, nullptr, logits);
    return logits;
  }

 private:
  ModelConfig c_;
  Backend& b_;
  Tensor embed_;  // (vocab, hidden)
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
  RMSNorm final_norm_;
  std::unique_ptr<Linear> lm_head_;  // null when tied to embed_
  RotaryEmbedding rotary_;
  ParamRegistry reg_;
  bool has_moe_ = false;  // some layer has a mixture-of-experts MLP
};

}  // namespace

std::unique_ptr<CausalLM> make_decoder_lm(const ModelConfig& c, Backend& b, const DecoderOptions& o) {
  return std::make_unique<DecoderLM>(c, b, o);
}

}  // namespace nanovllm
