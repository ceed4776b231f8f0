// _nanovllm: the C++ engine for Python. The pure-Python package (python/nanovllm/) wraps it
// with Nano-vLLM's API; this file owns what must be native: the engine loop, which runs each
// step without the GIL and checks for signals (Ctrl-C) between steps, aborting what is left so
// that no KV-cache block leaks.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <map>
#include <mutex>

#include "convert.h"
#include "engine/llm_engine.h"
#include "runtime/error.h"

namespace nanovllm::python {
namespace {

// Config's fields as LLM(model, **config) keywords, each with the Python type it takes (bool is
// not taken for a number, nor a number for a bool).
enum class Kind { Int, Float, Bool, Str };
struct Field {
  Kind kind;
  std::function<void(Config&, py::handle)> set;
};
const std::map<std::string, Field>& config_fields() {
  static const std::map<std::string, Field> fields = {
      {"max_num_batched_tokens", {Kind::Int, [](Config& c, py::handle v) { c.max_num_batched_tokens = v.cast<int>(); }}},
      {"max_num_seqs", {Kind::Int, [](Config& c, py::handle v) { c.max_num_seqs = v.cast<int>(); }}},
      {"max_model_len", {Kind::Int, [](Config& c, py::handle v) { c.max_model_len = v.cast<int>(); }}},
      {"gpu_memory_utilization",
       {Kind::Float, [](Config& c, py::handle v) { c.gpu_memory_utilization = v.cast<double>(); }}},
      {"tensor_parallel_size", {Kind::Int, [](Config& c, py::handle v) { c.tensor_parallel_size = v.cast<int>(); }}},
      {"enforce_eager", {Kind::Bool, [](Config& c, py::handle v) { c.enforce_eager = v.cast<bool>(); }}},
      {"kvcache_block_size", {Kind::Int, [](Config& c, py::handle v) { c.kvcache_block_size = v.cast<int>(); }}},
      {"num_kvcache_blocks", {Kind::Int, [](Config& c, py::handle v) { c.num_kvcache_blocks = v.cast<int>(); }}},
      {"enable_prefix_caching",
       {Kind::Bool, [](Config& c, py::handle v) { c.enable_prefix_caching = v.cast<bool>(); }}},
      {"enable_chunked_prefill",
       {Kind::Bool, [](Config& c, py::handle v) { c.enable_chunked_prefill = v.cast<bool>(); }}},
      {"cpu_kvcache_bytes", {Kind::Int, [](Config& c, py::handle v) { c.cpu_kvcache_bytes = v.cast<int64_t>(); }}},
      {"backend", {Kind::Str, [](Config& c, py::handle v) { c.backend = v.cast<std::string>(); }}},
      {"load_format", {Kind::Str, [](Config& c, py::handle v) { c.load_format = v.cast<std::string>(); }}},
      {"async_scheduling", {Kind::Str, [](Config& c, py::handle v) { c.async_scheduling = v.cast<std::string>(); }}},
  };
  return fields;
}

std::string type_name(py::handle v) { return py::str(v.get_type().attr("__name__")); }

Config config_from(const std::string& model, const py::kwargs& kwargs) {
  Config c;
  c.model = model;
  const auto& fields = config_fields();
  for (auto [key, value] : kwargs) {
    const std::string name = key.cast<std::string>();
    auto it = fields.find(name);
    if (it == fields.end()) {
      std::string known;
      for (const auto& [n, f] : fields) known += (known.empty() ? "" : ", ") + n;
      throw py::type_error("LLM() got an unexpected keyword argument '" + name + "' (known: " + known + ")");
    }
    const bool is_bool = py::isinstance<py::bool_>(value), is_int = py::isinstance<py::int_>(value) && !is_bool;
    bool ok = false;
    const char* wanted = "";
    switch (it->second.kind) {
      case Kind::Int: ok = is_int, wanted = "an int"; break;
      case Kind::Float: ok = is_int || py::isinstance<py::float_>(value), wanted = "a float"; break;
      case Kind::Bool: ok = is_bool, wanted = "a bool"; break;
      case Kind::Str: ok = py::isinstance<py::str>(value), wanted = "a str"; break;
    }
    if (!ok) throw py::type_error("LLM(): " + name + " must be " + wanted + ", not " + type_name(value));
    try {
      it->second.set(c, value);
    } catch (const py::cast_error&) {
      throw py::value_error("LLM(): " + name + " = " + std::string(py::repr(value)) + " is out of range");
    }
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw py::value_error(e.what());
  }
  return c;
}

ChatTemplateOptions chat_options(bool add_generation_prompt, const py::object& kwargs) {
  ChatTemplateOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  if (kwargs.is_none()) return opts;
  const nlohmann::ordered_json extra = to_json(kwargs, "chat_template_kwargs");
  if (!extra.is_object()) throw py::type_error("chat_template_kwargs must be a dict");
  opts.extra = nlohmann::json::object();
  for (const auto& [k, v] : extra.items()) {
    if (k == "enable_thinking" && v.is_boolean()) opts.enable_thinking = v.get<bool>();
    else opts.extra[k] = nlohmann::json::parse(v.dump());
  }
  return opts;
}

class PyLLM {
 public:
  PyLLM(const std::string& model, const py::kwargs& kwargs) {
    Config config = config_from(model, kwargs);
    py::gil_scoped_release nogil;  // loading is long and touches no Python object
    engine_ = std::make_unique<LLMEngine>(std::move(config));
  }

  // prompts: str or token-id lists; params: one per prompt; progress(finished, new_tokens) is
  // called after each step. Outputs in input order.
  py::list generate(const py::sequence& prompts, const std::vector<SamplingParams>& params,
                    const py::object& progress) {
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (!lock.owns_lock())
      throw std::runtime_error("this LLM is already generating in another thread (it runs one generate at a time)");
    const size_t n = py::len(prompts);
    if (params.size() != n)
      throw py::value_error(std::to_string(n) + " prompts but " + std::to_string(params.size()) + " SamplingParams");
    std::vector<Prompt> ps;
    ps.reserve(n);
    for (size_t i = 0; i < n; ++i) ps.push_back(to_prompt(prompts[i], i));

    std::vector<RequestOutput> results(n);
    std::map<int64_t, size_t> index;  // running request -> prompt
    try {
      std::string refused;
      {
        py::gil_scoped_release nogil;
        for (size_t i = 0; i < n && refused.empty(); ++i) {
          try {
            index[std::visit([&](const auto& p) { return engine_->add_request(p, params[i]); }, ps[i])] = i;
          } catch (const Error& e) {
            refused = "prompt " + std::to_string(i) + ": " + e.what();
          }
        }
      }
      if (!refused.empty()) throw py::value_error(refused);
      uint64_t generated = engine_->stats().generated_tokens;
      while (engine_->has_unfinished()) {
        std::vector<RequestOutput> done;
        {
          py::gil_scoped_release nogil;
          done = engine_->step();
        }
        size_t finished = 0;
        for (RequestOutput& o : done) {
          auto it = index.find(o.request_id);
          if (it == index.end()) continue;
          results[it->second] = std::move(o);
          index.erase(it);
          ++finished;
        }
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C: KeyboardInterrupt
        if (!progress.is_none()) {
          const uint64_t now = engine_->stats().generated_tokens;
          progress(finished, now - generated);
          generated = now;
        }
      }
    } catch (...) {
      // Interrupted or failed: abort what is left, so that the next generate starts from an
      // empty engine with every KV block free.
      for (const auto& [id, i] : index) engine_->abort(id);
      while (engine_->has_unfinished()) engine_->step();
      throw;
    }
    py::list out;
    for (size_t i = 0; i < n; ++i) out.append(to_dict(results[i], params[i].logprobs > 0));
    return out;
  }

  std::string apply_chat_template(const py::object& messages, bool add_generation_prompt, const py::object& tools,
                                  const py::object& chat_template_kwargs) const {
    const nlohmann::ordered_json msgs = to_json(messages, "messages");
    const nlohmann::ordered_json tl = to_json(tools, "tools");
    const ChatTemplateOptions opts = chat_options(add_generation_prompt, chat_template_kwargs);
    return engine_->apply_chat_template(msgs, opts, tl);
  }

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const {
    return engine_->tokenize(text, add_special_tokens);
  }

  py::dict stats() const {
    const EngineStats s = engine_->stats();
    py::dict d;
    d["steps"] = s.steps;
    d["prefix_cache_hits"] = s.prefix_cache_hits;
    d["prefix_cache_misses"] = s.prefix_cache_misses;
    d["preemptions"] = s.preemptions;
    d["prompt_tokens"] = s.prompt_tokens;
    d["cached_prompt_tokens"] = s.cached_prompt_tokens;
    d["generated_tokens"] = s.generated_tokens;
    return d;
  }

  py::dict config() const {
    const Config& c = engine_->config();
    py::dict d;
    d["model"] = c.model;
    d["max_num_batched_tokens"] = c.max_num_batched_tokens;
    d["max_num_seqs"] = c.max_num_seqs;
    d["max_model_len"] = c.max_model_len;
    d["gpu_memory_utilization"] = c.gpu_memory_utilization;
    d["tensor_parallel_size"] = c.tensor_parallel_size;
    d["enforce_eager"] = c.enforce_eager;
    d["kvcache_block_size"] = c.kvcache_block_size;
    d["num_kvcache_blocks"] = engine_->num_kv_blocks();
    d["enable_prefix_caching"] = c.enable_prefix_caching;
    d["enable_chunked_prefill"] = c.enable_chunked_prefill;
    d["cpu_kvcache_bytes"] = c.cpu_kvcache_bytes;
    d["backend"] = c.backend;
    d["load_format"] = c.load_format;
    d["async_scheduling"] = c.async_scheduling;
    return d;
  }

  LLMEngine& engine() { return *engine_; }

 private:
  std::unique_ptr<LLMEngine> engine_;
  std::mutex busy_;
};

}  // namespace
}  // namespace nanovllm::python

PYBIND11_MODULE(_nanovllm, m) {
  using namespace nanovllm;
  using namespace nanovllm::python;
  m.doc() = "nanovllm's C++ engine (use the nanovllm package: from nanovllm import LLM, SamplingParams)";
  m.attr("__version__") = NANOVLLM_VERSION;
  static py::exception<Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
  bind_sampling_params(m);
  py::class_<PyLLM>(m, "Engine")
      .def(py::init<const std::string&, const py::kwargs&>(), py::arg("model"))
      .def("generate", &PyLLM::generate, py::arg("prompts"), py::arg("params"), py::arg("progress") = py::none())
      .def("apply_chat_template", &PyLLM::apply_chat_template, py::arg("messages"),
           py::arg("add_generation_prompt") = true, py::arg("tools") = py::none(),
           py::arg("chat_template_kwargs") = py::none())
      .def("encode", &PyLLM::encode, py::arg("text"), py::arg("add_special_tokens") = true)
      .def("stats", &PyLLM::stats)
      .def("config", &PyLLM::config)
      .def_property_readonly("num_kv_blocks", [](PyLLM& l) { return l.engine().num_kv_blocks(); })
      .def_property_readonly("num_free_kv_blocks", [](PyLLM& l) { return l.engine().num_free_kv_blocks(); })
      .def_property_readonly("max_model_len", [](PyLLM& l) { return l.engine().config().max_model_len; })
      .def_property_readonly("has_tokenizer", [](PyLLM& l) { return l.engine().has_tokenizer(); })
      .def_property_readonly("has_chat_template", [](PyLLM& l) { return l.engine().has_chat_template(); })
      .def("check_invariants", [](PyLLM& l) { l.engine().check_invariants(); });
}
