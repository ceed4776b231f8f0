// Python objects to and from the C++ API's types, for the _nanovllm module.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <string>

#include "nanovllm/llm.h"

namespace nanovllm::python {

namespace py = pybind11;

// None, bool, int, float, str, list/tuple and dict (str keys) to JSON, key order kept. TypeError
// naming `what` and the path for anything else (or nesting deeper than 64).
nlohmann::ordered_json to_json(py::handle obj, const std::string& what);

// A prompt: str, or a sequence of token ids (list, tuple, anything with __index__ items).
// TypeError for anything else; ValueError for an id outside int32.
Prompt to_prompt(py::handle obj, size_t index);

// UTF-8 text to str, with U+FFFD for invalid bytes rather than an exception.
py::str to_str(const std::string& s);

// {"text", "token_ids", "finish_reason", "num_prompt_tokens", "num_cached_tokens"}, and
// "logprobs" when the request asked for them.
py::dict to_dict(const RequestOutput& out, bool with_logprobs);

// Registers SamplingParams (keyword constructor over every field, validated: ValueError).
void bind_sampling_params(py::module_& m);

}  // namespace nanovllm::python
