// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data; offsets are relative to the first byte after the header.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "loader/tensor_view.h"

namespace nanovllm {

// Parses a whole safetensors file held in memory and returns views into `file`. `label` names
// the file in error messages; `owner` is stored in every view to keep the bytes alive. Never
// crashes on malformed input: every problem is an Error that names `label` and the problem.
TensorMap parse_safetensors(std::span<const std::byte> file, const std::string& label,
                            std::shared_ptr<const void> owner = nullptr);

// Memory-maps one .safetensors file and parses it.
TensorMap load_safetensors_file(const std::filesystem::path& path);

// Loads every shard named by a model.safetensors.index.json.
TensorMap load_safetensors_index(const std::filesystem::path& index_path);

}  // namespace nanovllm
