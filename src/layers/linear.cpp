#include "layers/linear.h"

namespace nanovllm {

Linear::Linear(Backend& backend, int64_t in_features,
               std::vector<std::pair<std::string, int64_t>> parts, bool bias)
    : in_(in_features), out_(0), parts_(std::move(parts)), has_bias_(bias) {
  for (const auto& p : parts_) out_ += p.second;
  weight_ = backend.empty({out_, in_}, backend.compute_dtype());
  if (has_bias_) bias_ = backend.empty({out_}, backend.compute_dtype());
}

void Linear::register_params(ParamRegistry& reg) {
  int64_t row = 0;
  for (const auto& [prefix, rows] : parts_) {
    reg.add(prefix + ".weight", &weight_, {rows, in_}, row);
    if (has_bias_) reg.add(prefix + ".bias", &bias_, {rows}, row);
    row += rows;
  }
}

void Linear::forward(Backend& backend, const Tensor& x, Tensor& out) const {
  backend.linear(x, weight_, has_bias_ ? &bias_ : nullptr, out);
}

}  // namespace nanovllm
