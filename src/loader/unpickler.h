// A restricted unpickler for the data.pkl that torch.save writes: it turns the pickle into a tree
// of plain values and never imports, calls or executes anything.
//
// It reads the opcodes of protocols 2-5 that Python's pickler emits for a state dict: containers,
// scalars, strings, the memo, FRAME, and the object opcodes GLOBAL / STACK_GLOBAL, REDUCE, BUILD,
// NEWOBJ and BINPERSID. Globals resolve only against a fixed allowlist (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2/_v3, _rebuild_parameter[_with_state], torch storage classes
// and torch dtypes); any other global is refused by name. REDUCE on an allowed callable is data
// construction: OrderedDict() makes an empty dict, _rebuild_tensor_* makes a TensorRecord, and
// BINPERSID makes a StorageRecord from torch's ('storage', type, key, location, numel) id.
//
// Resource use is linear in the input and bounded by kMax* below; malformed input of any kind is
// an Error naming the label, the byte offset and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/dtype.h"

namespace nanovllm {

struct PickleValue;

// What an allowed global stands for. The rebuild functions take
//   _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])
//   _rebuild_tensor_v3(..., hooks, dtype[, metadata])  (dtypes that have no typed storage)
//   _rebuild_parameter(tensor, requires_grad, hooks)
//   _rebuild_parameter_with_state(tensor, requires_grad, hooks, state)
enum class PickleGlobal : uint8_t {
  OrderedDict,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  RebuildParameterWithState,
  StorageType,  // torch.FloatStorage, ..., torch.UntypedStorage
  DType,        // torch.float32, ...
};

// torch.save's persistent id for a storage: ('storage', <storage type>, key, location, numel).
// The bytes are the zip entry "<archive>/data/<key>".
struct StorageRecord {
  std::string type_name;  // "torch.BFloat16Storage", for messages
  // The element type; nullopt for torch.UntypedStorage (bytes) and for storage types nanovllm
  // has no DType for (complex, quantized), which only fail if a tensor uses them.
  std::optional<DType> dtype;
  bool untyped = false;  // torch.UntypedStorage: numel counts bytes
  std::string key;
  std::string location;  // "cpu", "cuda:0", ...
  int64_t numel = 0;
};

// The arguments of a _rebuild_tensor_v2/_v3 call, validated; a Parameter unwraps to its tensor.
struct TensorRecord {
  const PickleValue* storage = nullptr;  // kind Storage
  int64_t storage_offset = 0;            // in elements
  std::vector<int64_t> size, stride;     // in elements
  bool requires_grad = false;
  // _rebuild_tensor_v3 names the dtype (its storage is untyped); `dtype` is nullopt if nanovllm
  // has no DType for it (float8, uint16, ...), and `dtype_name` says which it was.
  bool has_dtype = false;
  std::optional<DType> dtype;
  std::string dtype_name;  // "torch.float8_e4m3fn", for messages
};

struct PickleValue {
  // clang-format off
  enum class Kind : uint8_t {
    None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor,
  };
  // clang-format on
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                       // String, Bytes; Global: "module.name"
  std::vector<const PickleValue*> items;  // Tuple, List
  // Dict, in insertion order (Python dicts and OrderedDict both keep it). A key set twice keeps
  // its first position and its last value, as in Python.
  std::vector<std::pair<const PickleValue*, const PickleValue*>> entries;
  const PickleValue* state = nullptr;  // Dict: what BUILD gave it (state_dict's _metadata)
  PickleGlobal global = PickleGlobal::OrderedDict;  // Global
  std::optional<DType> global_dtype;                // Global StorageType / DType
  std::unique_ptr<const StorageRecord> storage;     // Storage
  std::unique_ptr<const TensorRecord> tensor;       // Tensor

  // Internal bookkeeping: a container placed inside another is frozen, so the value graph stays
  // acyclic and `depth` (1 + the deepest child) stays true.
  bool frozen = false;
  int depth = 1;

  // The value of a String-keyed Dict entry, or nullptr.
  const PickleValue* get(const std::string& key) const;
};

// "dict", "tuple", "torch._utils._rebuild_tensor_v2", ... for error messages.
std::string pickle_kind_name(const PickleValue& v);

// The unpickled value graph; it owns every node, and `root` points into it.
class PickleTree {
 public:
  PickleTree() = default;
  PickleTree(PickleTree&&) = default;  // moving a deque keeps its elements where they are
  PickleTree& operator=(PickleTree&&) = default;
  PickleTree(const PickleTree&) = delete;
  PickleTree& operator=(const PickleTree&) = delete;

  const PickleValue& root() const { return *root_; }
  size_t size() const { return nodes_.size(); }

 private:
  friend class RestrictedUnpickler;
  std::deque<PickleValue> nodes_;  // a deque: nodes never move, so pointers to them stay valid
  const PickleValue* root_ = nullptr;
};

// Limits on what one pickle may build. torch's data.pkl holds ~20 nodes per tensor at nesting
// depth 5 and opens at most 3 marks at once; a 10,000-tensor checkpoint needs 200k nodes.
constexpr size_t kMaxPickleNodes = size_t{1} << 21;
constexpr int kMaxPickleDepth = 64;
constexpr size_t kMaxPickleMarks = 64;

// Unpickles `data`; errors read "<label>: byte <offset>: <problem>".
PickleTree unpickle_restricted(std::span<const std::byte> data, const std::string& label);

}  // namespace nanovllm
