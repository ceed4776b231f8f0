// Finds a model folder's weights and opens them, whatever the format.
#pragma once

#include <filesystem>
#include <string>

#include "loader/tensor_view.h"

namespace nanovllm {

struct Checkpoint {
  std::string format;  // "safetensors", "safetensors (sharded)", "pytorch_model.bin", ...
  TensorMap tensors;
};

// Looks for, in this order: model.safetensors.index.json, model.safetensors,
// pytorch_model.bin.index.json, pytorch_model.bin. Error if the folder has none of them.
Checkpoint open_checkpoint(const std::filesystem::path& model_dir);

}  // namespace nanovllm
