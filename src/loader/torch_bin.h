// pytorch_model.bin as torch.save writes it (torch >= 1.6): an uncompressed zip archive holding
// <archive>/data.pkl (a pickle of the state dict whose tensors refer to storages by persistent
// id) and <archive>/data/<key> (each storage's raw bytes). The pickle is read by a restricted
// unpickler that knows only what torch.save writes for tensors: it never imports or calls
// anything, and refuses every other global by name.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "loader/tensor_view.h"

namespace nanovllm {

// Parses a whole torch zip checkpoint held in memory; views point into `file` (or, for a
// non-contiguous tensor, into a copy they own). Never crashes on malformed input: every problem
// is an Error naming `label`, the zip entry, and the problem.
TensorMap parse_torch_bin(std::span<const std::byte> file, const std::string& label,
                          std::shared_ptr<const void> owner = nullptr);

// Memory-maps one pytorch_model.bin and parses it.
TensorMap load_torch_bin_file(const std::filesystem::path& path);

// Loads every shard named by a pytorch_model.bin.index.json.
TensorMap load_torch_bin_index(const std::filesystem::path& index_path);

}  // namespace nanovllm
