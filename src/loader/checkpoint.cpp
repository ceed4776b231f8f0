#include "loader/checkpoint.h"

#include "loader/safetensors.h"
#include "loader/torch_bin.h"
#include "runtime/error.h"

namespace nanovllm {

Checkpoint open_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(dir / "model.safetensors.index.json"))
    return {"safetensors (sharded)", load_safetensors_index(dir / "model.safetensors.index.json")};
  if (fs::exists(dir / "model.safetensors"))
    return {"safetensors", load_safetensors_file(dir / "model.safetensors")};
  if (fs::exists(dir / "pytorch_model.bin.index.json"))
    return {"pytorch_model.bin (sharded)", load_torch_bin_index(dir / "pytorch_model.bin.index.json")};
  if (fs::exists(dir / "pytorch_model.bin"))
    return {"pytorch_model.bin", load_torch_bin_file(dir / "pytorch_model.bin")};
  throw Error(dir.string() +
              ": no weights found (looked for model.safetensors, model.safetensors.index.json, "
              "pytorch_model.bin and pytorch_model.bin.index.json)");
}

}  // namespace nanovllm
