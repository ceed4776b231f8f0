// A linear layer y = x W^T (+ b) whose weight may pack several checkpoint tensors along the
// output dimension (q/k/v into qkv_proj, gate/up into gate_up_proj): one larger GEMM instead of
// several small ones.
#pragma once

#include <string>
#include <vector>

#include "layers/param_registry.h"

namespace nanovllm {

class Linear {
 public:
  // `parts` are (checkpoint prefix, output rows) pairs, stacked in order; the prefix gets
  // ".weight" (and ".bias" when `bias`) appended.
  Linear(Backend& backend, int64_t in_features,
         std::vector<std::pair<std::string, int64_t>> parts, bool bias);
  void register_params(ParamRegistry& reg);
  // out (T, out_features) = x (T, in_features) W^T + b
  void forward(Backend& backend, const Tensor& x, Tensor& out) const;
  const Tensor& weight() const { return weight_; }
  const Tensor* bias() const { return has_bias_ ? &bias_ : nullptr; }  // null without a bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  std::vector<std::pair<std::string, int64_t>> parts_;
  Tensor weight_;  // (out_features, in_features)
  Tensor bias_;    // (out_features,) when the layer has a bias
  bool has_bias_;
};

}  // namespace nanovllm
