#include "convert.h"

#include <pybind11/stl.h>

#include <cmath>
#include <limits>

#include "runtime/error.h"

namespace nanovllm::python {
namespace {

nlohmann::ordered_json to_json_at(py::handle obj, const std::string& path, int depth) {
  if (depth > 64) throw py::type_error(path + ": nested too deeply");
  if (obj.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(obj)) return obj.cast<bool>();
  if (py::isinstance<py::int_>(obj)) {
    try {
      return obj.cast<int64_t>();
    } catch (const py::cast_error&) {
      throw py::value_error(path + ": integer out of the 64-bit range");
    }
  }
  if (py::isinstance<py::float_>(obj)) return obj.cast<double>();
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::dict>(obj)) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (auto [k, v] : obj.cast<py::dict>()) {
      if (!py::isinstance<py::str>(k)) throw py::type_error(path + ": dict keys must be str");
      const std::string key = k.cast<std::string>();
      j[key] = to_json_at(v, path + "[\"" + key + "\"]", depth + 1);
    }
    return j;
  }
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    size_t i = 0;
    for (py::handle v : obj) j.push_back(to_json_at(v, path + "[" + std::to_string(i++) + "]", depth + 1));
    return j;
  }
  throw py::type_error(path + ": " + std::string(py::str(obj.get_type().attr("__name__"))) +
                       " is not JSON-like (use None, bool, int, float, str, list or dict)");
}

std::string repr_of(const SamplingParams& p) {
  auto num = [](double v) { return std::string(py::repr(py::float_(v))); };
  std::string stop = "[";
  for (const auto& s : p.stop) stop += (stop.size() > 1 ? ", " : "") + std::string(py::repr(to_str(s)));
  stop += "]";
  std::string ids = "[";
  for (int32_t t : p.stop_token_ids) ids += (ids.size() > 1 ? ", " : "") + std::to_string(t);
  ids += "]";
  return "SamplingParams(temperature=" + num(p.temperature) + ", max_tokens=" + std::to_string(p.max_tokens) +
         ", ignore_eos=" + (p.ignore_eos ? "True" : "False") + ", top_k=" + std::to_string(p.top_k) +
         ", top_p=" + num(p.top_p) + ", min_p=" + num(p.min_p) + ", repetition_penalty=" + num(p.repetition_penalty) +
         ", presence_penalty=" + num(p.presence_penalty) + ", frequency_penalty=" + num(p.frequency_penalty) +
         ", seed=" + (p.seed ? std::to_string(*p.seed) : "None") + ", min_tokens=" + std::to_string(p.min_tokens) +
         ", stop=" + stop + ", stop_token_ids=" + ids + ", logprobs=" + std::to_string(p.logprobs) +
         ", skip_special_tokens=" + (p.skip_special_tokens ? "True" : "False") + ")";
}

// vLLM takes one stop string or a list of them.
std::vector<std::string> to_stop(py::handle obj) {
  if (obj.is_none()) return {};
  if (py::isinstance<py::str>(obj)) return {obj.cast<std::string>()};
  try {
    return obj.cast<std::vector<std::string>>();
  } catch (const py::cast_error&) {
    throw py::type_error("SamplingParams.stop must be a str or a list of str");
  }
}

std::optional<uint64_t> to_seed(py::handle obj) {
  if (obj.is_none()) return std::nullopt;
  if (!py::isinstance<py::int_>(obj) || py::isinstance<py::bool_>(obj))
    throw py::type_error("SamplingParams.seed must be an int or None");
  try {
    return obj.cast<uint64_t>();
  } catch (const py::cast_error&) {
    throw py::value_error("SamplingParams.seed = " + std::string(py::repr(obj)) +
                          " is invalid: must be in [0, 2**64)");
  }
}

}  // namespace

nlohmann::ordered_json to_json(py::handle obj, const std::string& what) { return to_json_at(obj, what, 0); }

Prompt to_prompt(py::handle obj, size_t index) {
  const std::string where = "prompt " + std::to_string(index);
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::bytes>(obj) || !py::isinstance<py::sequence>(obj))
    throw py::type_error(where + ": a prompt is a str or a list of token ids, not " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  std::vector<int32_t> ids;
  for (py::handle item : obj) {
    if (!PyIndex_Check(item.ptr()) || py::isinstance<py::bool_>(item))
      throw py::type_error(where + ": token ids must be ints, not " +
                           std::string(py::str(item.get_type().attr("__name__"))));
    const long long v = PyLong_AsLongLong(py::reinterpret_steal<py::object>(PyNumber_Index(item.ptr())).ptr());
    if (PyErr_Occurred()) throw py::error_already_set();
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      throw py::value_error(where + ": token id " + std::to_string(v) + " is out of range");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::dict to_dict(const RequestOutput& out, bool with_logprobs) {
  py::dict d;
  d["text"] = to_str(out.text);
  d["token_ids"] = py::cast(out.token_ids);
  d["finish_reason"] = out.finish_reason;
  d["num_prompt_tokens"] = out.num_prompt_tokens;
  d["num_cached_tokens"] = out.num_cached_tokens;
  if (with_logprobs) {
    py::list lps;
    for (const TokenLogprobs& t : out.logprobs) {
      py::dict e;
      e["token_id"] = t.token_id;
      e["logprob"] = t.logprob;
      py::list top;
      for (const auto& [id, lp] : t.top) top.append(py::make_tuple(id, lp));
      e["top"] = top;
      lps.append(e);
    }
    d["logprobs"] = lps;
  }
  return d;
}

void bind_sampling_params(py::module_& m) {
  py::class_<SamplingParams>(m, "SamplingParams", R"doc(
How one request is sampled and when it stops (vLLM's names; Nano-vLLM's three first).

temperature: 0 is greedy. max_tokens: tokens to generate at most. ignore_eos: keep going past
end-of-sequence tokens. top_k (-1: all), top_p in (0, 1], min_p in [0, 1],
repetition_penalty > 0 (on prompt and output), presence_penalty and frequency_penalty in
[-2, 2] (on output), seed (same seed, same output), min_tokens (EOS and stop tokens are
suppressed before), stop (strings, cut from the text), stop_token_ids, logprobs (top-N per
token, 0: none), skip_special_tokens (in the text). Invalid values raise ValueError.
)doc")
      .def(py::init([](double temperature, int max_tokens, bool ignore_eos, int top_k, double top_p, double min_p,
                       double repetition_penalty, double presence_penalty, double frequency_penalty,
                       const py::object& seed, int min_tokens, const py::object& stop,
                       std::vector<int32_t> stop_token_ids, int logprobs, bool skip_special_tokens) {
             SamplingParams p;
             p.temperature = temperature;
             p.max_tokens = max_tokens;
             p.ignore_eos = ignore_eos;
             p.top_k = top_k;
             p.top_p = top_p;
             p.min_p = min_p;
             p.repetition_penalty = repetition_penalty;
             p.presence_penalty = presence_penalty;
             p.frequency_penalty = frequency_penalty;
             p.seed = to_seed(seed);
             p.min_tokens = min_tokens;
             p.stop = to_stop(stop);
             p.stop_token_ids = std::move(stop_token_ids);
             p.logprobs = logprobs;
             p.skip_special_tokens = skip_special_tokens;
             try {
               p.validate();
             } catch (const Error& e) {
               throw py::value_error(e.what());
             }
             return p;
           }),
           py::arg("temperature") = 1.0, py::arg("max_tokens") = 64, py::arg("ignore_eos") = false, py::kw_only(),
           py::arg("top_k") = -1, py::arg("top_p") = 1.0, py::arg("min_p") = 0.0, py::arg("repetition_penalty") = 1.0,
           py::arg("presence_penalty") = 0.0, py::arg("frequency_penalty") = 0.0, py::arg("seed") = py::none(),
           py::arg("min_tokens") = 0, py::arg("stop") = py::none(),
           py::arg("stop_token_ids") = std::vector<int32_t>{}, py::arg("logprobs") = 0,
           py::arg("skip_special_tokens") = true)
      .def_readwrite("temperature", &SamplingParams::temperature)
      .def_readwrite("max_tokens", &SamplingParams::max_tokens)
      .def_readwrite("ignore_eos", &SamplingParams::ignore_eos)
      .def_readwrite("top_k", &SamplingParams::top_k)
      .def_readwrite("top_p", &SamplingParams::top_p)
      .def_readwrite("min_p", &SamplingParams::min_p)
      .def_readwrite("repetition_penalty", &SamplingParams::repetition_penalty)
      .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
      .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
      .def_property(
          "seed", [](const SamplingParams& p) { return p.seed; },
          [](SamplingParams& p, const py::object& v) { p.seed = to_seed(v); })
      .def_readwrite("min_tokens", &SamplingParams::min_tokens)
      .def_property(
          "stop", [](const SamplingParams& p) { return p.stop; },
          [](SamplingParams& p, const py::object& v) { p.stop = to_stop(v); })
      .def_readwrite("stop_token_ids", &SamplingParams::stop_token_ids)
      .def_readwrite("logprobs", &SamplingParams::logprobs)
      .def_readwrite("skip_special_tokens", &SamplingParams::skip_special_tokens)
      .def("validate",
           [](const SamplingParams& p) {
             try {
               p.validate();
             } catch (const Error& e) {
               throw py::value_error(e.what());
             }
           },
           "Raises ValueError naming the first invalid field (generate checks too).")
      .def("__repr__", &repr_of)
      .def("__copy__", [](const SamplingParams& p) { return p; })
      .def("__deepcopy__", [](const SamplingParams& p, const py::dict&) { return p; });
}

}  // namespace nanovllm::python
