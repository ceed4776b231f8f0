#include "loader/model_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/error.h"

namespace nanovllm {
namespace {
using nlohmann::json;

json parse_json_object(const std::string& text, const std::filesystem::path& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error(where.string() + ": not valid JSON");
  if (!j.is_object()) throw Error(where.string() + ": expected a JSON object at the top level");
  return j;
}

[[noreturn]] void field_error(const std::filesystem::path& where, const std::string& field,
                              const std::string& problem) {
  throw Error(where.string() + ": field '" + field + "' " + problem);
}

bool has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

int get_int(const json& j, const char* key, const std::filesystem::path& where) {
  const json& v = j[key];
  if (!v.is_number_integer()) field_error(where, key, "must be an integer, got " + v.dump());
  const int64_t x = v.get<int64_t>();
  if (x <= 0) field_error(where, key, "must be positive, got " + std::to_string(x));
  if (x > (int64_t{1} << 30)) field_error(where, key, "is implausibly large: " + std::to_string(x));
  return static_cast<int>(x);
}
int required_int(const json& j, const char* key, const std::filesystem::path& where) {
  if (!has(j, key)) field_error(where, key, "is required but missing");
  return get_int(j, key, where);
}
double get_number(const json& j, const char* key, const std::filesystem::path& where) {
  if (!j[key].is_number()) field_error(where, key, "must be a number, got " + j[key].dump());
  return j[key].get<double>();
}
bool get_bool(const json& j, const char* key, const std::filesystem::path& where) {
  if (!j[key].is_boolean()) field_error(where, key, "must be true or false, got " + j[key].dump());
  return j[key].get<bool>();
}
// eos_token_id is an int or a list of ints.
std::vector<int> get_id_list(const json& j, const char* key, const std::filesystem::path& where) {
  std::vector<int> out;
  const json& v = j[key];
  auto one = [&](const json& x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
      field_error(where, key, "must be a token id or a list of token ids, got " + v.dump());
    out.push_back(static_cast<int>(x.get<int64_t>()));
  };
  if (v.is_array()) for (const auto& x : v) one(x);
  else one(v);
  return out;
}
std::optional<int> get_id(const json& j, const char* key, const std::filesystem::path& where) {
  if (!has(j, key)) return std::nullopt;
  auto ids = get_id_list(j, key, where);
  if (ids.size() != 1) field_error(where, key, "must be one token id");
  return ids[0];
}

void read_rope(const json& j, ModelConfig& c, const std::filesystem::path& where) {
  // transformers < 5 writes rope_theta and rope_scaling at the top level; transformers 5 nests
  // both in rope_parameters.
  if (has(j, "rope_theta")) c.rope_theta = get_number(j, "rope_theta", where);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!has(j, key)) continue;
    const json& r = j[key];
    if (!r.is_object()) field_error(where, key, "must be an object");
    if (has(r, "rope_theta")) c.rope_theta = get_number(r, "rope_theta", where);
    std::string type = "default";
    for (const char* tkey : {"rope_type", "type"})
      if (has(r, tkey) && r[tkey].is_string()) type = r[tkey].get<std::string>();
    if (type == "llama3") {
      auto need = [&](const char* f) {
        if (!has(r, f)) field_error(where, key, "has rope type 'llama3' but no '" + std::string(f) + "'");
        return get_number(r, f, where);
      };
      c.rope_factor = need("factor");
      c.rope_low_freq_factor = need("low_freq_factor");
      c.rope_high_freq_factor = need("high_freq_factor");
      const double orig = need("original_max_position_embeddings");
      if (!(c.rope_factor >= 1))
        field_error(where, key, "factor must be at least 1, got " + std::to_string(c.rope_factor));
      if (!(c.rope_low_freq_factor > 0) || !(c.rope_high_freq_factor > c.rope_low_freq_factor))
        field_error(where, key, "needs 0 < low_freq_factor < high_freq_factor");
      if (!(orig >= 1) || orig != std::floor(orig) || orig > 1e9)
        field_error(where, key, "original_max_position_embeddings must be a positive integer");
      c.rope_original_max_positions = static_cast<int>(orig);
    } else if (type != "default") {
      field_error(where, key, "asks for rope type '" + type + "', which nanovllm does not support yet");
    }
    c.rope_type = type;
  }
  if (!(c.rope_theta > 0)) field_error(where, "rope_theta", "must be positive");
}

// Mixture-of-experts fields (Mixtral's num_local_experts, Qwen3-MoE's num_experts and the rest).
void read_experts(const json& j, ModelConfig& c, const std::filesystem::path& where) {
  for (const char* key : {"num_local_experts", "num_experts"})
    if (has(j, key)) c.num_experts = get_int(j, key, where);
  if (c.num_experts == 0) return;
  const char* per = "num_experts_per_tok";
  if (!has(j, per)) field_error(where, per, "is required with " + std::to_string(c.num_experts) + " experts");
  c.experts_per_token = get_int(j, per, where);
  if (c.experts_per_token > c.num_experts)
    field_error(where, per, "(" + std::to_string(c.experts_per_token) + ") exceeds the number of experts (" +
                                std::to_string(c.num_experts) + ")");
  c.moe_intermediate_size =
      has(j, "moe_intermediate_size") ? get_int(j, "moe_intermediate_size", where) : c.intermediate_size;
  // Mixtral's configs (num_local_experts) have no norm_topk_prob: it always renormalises.
  c.norm_topk_prob = has(j, "num_local_experts");
  if (has(j, "norm_topk_prob")) c.norm_topk_prob = get_bool(j, "norm_topk_prob", where);
  if (has(j, "decoder_sparse_step")) c.decoder_sparse_step = get_int(j, "decoder_sparse_step", where);
  if (has(j, "mlp_only_layers")) {
    const json& v = j["mlp_only_layers"];
    if (!v.is_array()) field_error(where, "mlp_only_layers", "must be a list of layer indices, got " + v.dump());
    for (const auto& x : v) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= c.num_hidden_layers)
        field_error(where, "mlp_only_layers", "must hold layer indices below num_hidden_layers, got " + v.dump());
      c.mlp_only_layers.push_back(static_cast<int>(x.get<int64_t>()));
    }
  }
  for (const char* key : {"shared_expert_intermediate_size", "n_shared_experts"})
    if (has(j, key) && j[key].is_number() && j[key].get<double>() > 0)
      field_error(where, key, "is set; shared experts are not supported yet");
}
}  // namespace

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelConfig parse_model_config(const std::string& text, const std::filesystem::path& where) {
  const json j = parse_json_object(text, where);
  ModelConfig c;
  c.path = where;
  if (has(j, "architectures")) {
    const json& a = j["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string())
      field_error(where, "architectures", "must be a non-empty list of strings");
    c.architecture = a[0].get<std::string>();
  }
  if (has(j, "model_type")) {
    if (!j["model_type"].is_string()) field_error(where, "model_type", "must be a string");
    c.model_type = j["model_type"].get<std::string>();
  }
  c.hidden_size = required_int(j, "hidden_size", where);
  c.num_hidden_layers = required_int(j, "num_hidden_layers", where);
  c.num_attention_heads = required_int(j, "num_attention_heads", where);
  c.num_key_value_heads = required_int(j, "num_key_value_heads", where);
  c.intermediate_size = required_int(j, "intermediate_size", where);
  c.vocab_size = required_int(j, "vocab_size", where);
  c.max_position_embeddings = required_int(j, "max_position_embeddings", where);

  if (c.num_attention_heads % c.num_key_value_heads != 0)
    field_error(where, "num_key_value_heads",
                "(" + std::to_string(c.num_key_value_heads) + ") must divide num_attention_heads (" +
                    std::to_string(c.num_attention_heads) + ")");
  if (has(j, "head_dim")) {
    c.head_dim = get_int(j, "head_dim", where);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      field_error(where, "head_dim", "is missing and hidden_size (" + std::to_string(c.hidden_size) +
                                         ") is not divisible by num_attention_heads (" +
                                         std::to_string(c.num_attention_heads) + ")");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0)
    field_error(where, "head_dim", "must be even for rotary embedding, got " + std::to_string(c.head_dim));

  if (has(j, "rms_norm_eps")) {
    c.rms_norm_eps = get_number(j, "rms_norm_eps", where);
    if (!(c.rms_norm_eps > 0)) field_error(where, "rms_norm_eps", "must be positive");
  }
  read_rope(j, c, where);
  // transformers 5 writes "dtype"; earlier versions "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!has(j, key)) continue;
    if (!j[key].is_string()) field_error(where, key, "must be a string");
    const std::string s = j[key].get<std::string>();
    auto t = dtype_from_torch_name(s);
    if (!t) field_error(where, key, "names an unknown dtype '" + s + "' (expected float32, bfloat16 or float16)");
    c.torch_dtype = *t;
  }
  if (has(j, "tie_word_embeddings")) c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where);
  if (has(j, "attention_bias")) c.attention_bias = get_bool(j, "attention_bias", where);
  if (has(j, "mlp_bias")) c.mlp_bias = get_bool(j, "mlp_bias", where);
  if (has(j, "hidden_act")) {
    if (!j["hidden_act"].is_string()) field_error(where, "hidden_act", "must be a string");
    c.hidden_act = j["hidden_act"].get<std::string>();
    if (c.hidden_act != "silu")
      field_error(where, "hidden_act", "is '" + c.hidden_act + "'; only 'silu' is supported");
  }
  if (has(j, "use_sliding_window")) {  // Qwen2/Qwen3: sliding_window is inert unless this is true
    if (get_bool(j, "use_sliding_window", where))
      field_error(where, "use_sliding_window", "is true; sliding-window attention is not supported yet");
  } else if (has(j, "sliding_window")) {
    c.sliding_window = get_int(j, "sliding_window", where);
  }
  read_experts(j, c, where);
  if (has(j, "eos_token_id")) c.eos_token_ids = get_id_list(j, "eos_token_id", where);
  c.bos_token_id = get_id(j, "bos_token_id", where);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  if (!std::filesystem::is_directory(model_dir))
    throw Error(model_dir.string() + ": not a model folder (no such directory)");
  if (!std::filesystem::exists(path)) throw Error(path.string() + ": missing (every model folder needs a config.json)");
  return parse_model_config(read_text_file(path), path);
}

GenerationConfig parse_generation_config(const std::string& text, const std::filesystem::path& where) {
  const json j = parse_json_object(text, where);
  GenerationConfig g;
  g.present = true;
  if (has(j, "eos_token_id")) g.eos_token_ids = get_id_list(j, "eos_token_id", where);
  g.bos_token_id = get_id(j, "bos_token_id", where);
  g.pad_token_id = get_id(j, "pad_token_id", where);
  if (has(j, "do_sample")) g.do_sample = get_bool(j, "do_sample", where);
  if (has(j, "temperature")) g.temperature = get_number(j, "temperature", where);
  if (has(j, "top_p")) g.top_p = get_number(j, "top_p", where);
  if (has(j, "min_p")) g.min_p = get_number(j, "min_p", where);
  if (has(j, "repetition_penalty")) g.repetition_penalty = get_number(j, "repetition_penalty", where);
  if (has(j, "top_k")) {
    if (!j["top_k"].is_number_integer()) field_error(where, "top_k", "must be an integer");
    g.top_k = j["top_k"].get<int>();
  }
  if (has(j, "max_new_tokens")) g.max_new_tokens = get_int(j, "max_new_tokens", where);
  return g;
}

GenerationConfig load_generation_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "generation_config.json";
  if (!std::filesystem::exists(path)) return {};
  return parse_generation_config(read_text_file(path), path);
}

}  // namespace nanovllm
