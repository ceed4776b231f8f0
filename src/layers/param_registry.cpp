#include "layers/param_registry.h"

#include <algorithm>
#include <set>

#include "runtime/error.h"

namespace nanovllm {

void ParamRegistry::add(std::string name, Tensor* target, std::vector<int64_t> shape,
                        int64_t row_offset) {
  slots_.push_back({std::move(name), target, std::move(shape), row_offset});
}
void ParamRegistry::allow_unused(std::string name) { unused_ok_.push_back(std::move(name)); }
void ParamRegistry::allow_unused_if(std::function<bool(const std::string&)> pred) {
  unused_ok_if_.push_back(std::move(pred));
}

int64_t ParamRegistry::num_parameters() const {
  int64_t n = 0;
  for (const auto& s : slots_) {
    int64_t k = 1;
    for (int64_t d : s.shape) k *= d;
    n += k;
  }
  return n;
}

void ParamRegistry::load(const TensorMap& tensors, Backend& backend, const std::string& source,
                         const Progress& progress) const {
  std::vector<std::string> missing, misshaped, wrong_type, unexpected;
  std::set<std::string> wanted;
  for (const auto& s : slots_) {
    wanted.insert(s.name);
    auto it = tensors.find(s.name);
    if (it == tensors.end()) {
      missing.push_back(s.name + " " + shape_string(s.shape));
    } else if (it->second.shape != s.shape) {
      misshaped.push_back(s.name + ": checkpoint has " + shape_string(it->second.shape) +
                          ", model expects " + shape_string(s.shape));
    } else if (!is_floating(it->second.dtype)) {
      wrong_type.push_back(s.name + ": " + std::string(dtype_name(it->second.dtype)));
    }
  }
  for (const auto& [name, view] : tensors) {
    if (wanted.count(name)) continue;
    if (std::find(unused_ok_.begin(), unused_ok_.end(), name) != unused_ok_.end()) continue;
    if (std::any_of(unused_ok_if_.begin(), unused_ok_if_.end(), [&, n = name](const auto& p) { return p(n); }))
      continue;
    unexpected.push_back(name + " " + shape_string(view.shape));
  }
  if (!missing.empty() || !misshaped.empty() || !wrong_type.empty() || !unexpected.empty()) {
    std::string msg = source + ": the checkpoint does not match the model";
    auto section = [&](const char* title, const std::vector<std::string>& items) {
      if (items.empty()) return;
      msg += "\n  " + std::string(title) + " (" + std::to_string(items.size()) + "):";
      for (const auto& i : items) msg += "\n    " + i;
    };
    section("missing", missing);
    section("wrong shape", misshaped);
    section("not a floating-point tensor", wrong_type);
    section("unexpected", unexpected);
    throw Error(msg);
  }
  if (!progress) {
    for (const auto& s : slots_) backend.load_rows(*s.target, s.row_offset, tensors.at(s.name));
    return;
  }
  int64_t total = 0, done = 0;
  for (const auto& s : slots_) total += static_cast<int64_t>(tensors.at(s.name).nbytes);
  progress(0, total);
  for (const auto& s : slots_) {
    const TensorView& view = tensors.at(s.name);
    backend.load_rows(*s.target, s.row_offset, view);
    done += static_cast<int64_t>(view.nbytes);
    progress(done, total);
  }
}

}  // namespace nanovllm
