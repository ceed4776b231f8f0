// RMSNorm with a learned scale, and the fused residual-add variant the decoder layers use.
#pragma once

#include <string>

#include "layers/param_registry.h"

namespace nanovllm {

class RMSNorm {
 public:
  RMSNorm(Backend& backend, std::string name, int64_t size, float eps)
      : name_(std::move(name)), size_(size), eps_(eps),
        weight_(backend.empty({size}, backend.compute_dtype())) {}
  void register_params(ParamRegistry& reg) { reg.add(name_ + ".weight", &weight_, {size_}); }
  void forward(Backend& b, const Tensor& x, Tensor& out) const { b.rms_norm(x, weight_, eps_, out); }
  // residual += x; x = norm(residual)
  void forward_residual(Backend& b, Tensor& x, Tensor& residual) const {
    b.add_rms_norm(x, residual, weight_, eps_);
  }
  const Tensor& weight() const { return weight_; }
  float eps() const { return eps_; }

 private:
  std::string name_;
  int64_t size_;
  float eps_;
  Tensor weight_;  // (size,)
};

}  // namespace nanovllm
