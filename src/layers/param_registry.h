// Where each checkpoint tensor goes. Layers allocate their parameters and register, for each
// checkpoint name, the tensor and the row offset it fills (packed projections such as qkv_proj
// take several checkpoint tensors). Loading then checks the whole checkpoint at once, so that
// every missing, unexpected and mis-shaped name is reported in one error, before any byte is
// converted.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "loader/tensor_view.h"
#include "runtime/backend.h"

namespace nanovllm {

class ParamRegistry {
 public:
  // `target` must outlive load(). `shape` is the shape the checkpoint tensor must have.
  void add(std::string name, Tensor* target, std::vector<int64_t> shape, int64_t row_offset = 0);
  // A checkpoint name that may be present and is not used (a tied lm_head, rotary buffers).
  void allow_unused(std::string name);
  // A predicate for unused names, e.g. every "...rotary_emb.inv_freq".
  void allow_unused_if(std::function<bool(const std::string&)> pred);

  // Validates names and shapes against the checkpoint, then converts and copies each tensor
  // into its target. Throws one Error listing every problem, naming `source`.
  // `progress`, when given, is called with (bytes converted so far, bytes in all) before the
  // first tensor and after each one.
  using Progress = std::function<void(int64_t bytes_done, int64_t bytes_total)>;
  void load(const TensorMap& tensors, Backend& backend, const std::string& source,
            const Progress& progress = {}) const;

  // Calls f(name, target, shape, row_offset) for every registered slot, in registration order:
  // how load_format "dummy" fills the parameters without a checkpoint.
  void for_each(const std::function<void(const std::string&, Tensor&, const std::vector<int64_t>&, int64_t)>& f) const {
    for (const auto& s : slots_) f(s.name, *s.target, s.shape, s.row_offset);
  }

  size_t size() const { return slots_.size(); }
  int64_t num_parameters() const;

 private:
  struct Slot {
    std::string name;
    Tensor* target;
    std::vector<int64_t> shape;
    int64_t row_offset;
  };
  std::vector<Slot> slots_;
  std::vector<std::string> unused_ok_;
  std::vector<std::function<bool(const std::string&)>> unused_ok_if_;
};

}  // namespace nanovllm
